// The history panel (DESIGN.md section 11): pick a past version of the open
// room with a slider or from its checkpoints and snapshots, see the graph as
// it was, read-only, with what changed since highlighted on the canvas, and
// restore it. It talks to the page only through window.liveshare (app.js)
// and the liveshare:version event, so the page's own code stays apart.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const ls = () => window.liveshare;
  const enc = encodeURIComponent;

  const h = {
    room: null, // the open room's id
    version: 0, // the room's current version
    oldest: 0, // the oldest version the slider offers
    shown: null, // the version shown read-only, or null for live
    points: [], // snapshots and checkpoints, newest first
    loading: 0, // a counter, so that a slow answer never overwrites a newer one
  };

  function fmtTime(t) {
    const d = new Date(t);
    return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function renderPanel() {
    const open = !!h.room;
    $('history-panel').hidden = !open;
    if (!open) return;
    const slider = $('history-slider');
    slider.min = String(h.oldest);
    slider.max = String(h.version);
    if (h.shown === null) slider.value = String(h.version);
    $('history-at').textContent = h.shown === null ? `live, v${h.version}` : `v${h.shown} of v${h.version}`;
    $('history-live').disabled = h.shown === null;
    const { can } = ls().room();
    $('history-restore').disabled = h.shown === null || h.shown === h.version || !can('owner');
    $('history-restore').title = can('owner') ? 'Restore the room to the version shown' : 'Only owners may restore';
  }

  function renderPoints() {
    const list = $('history-points');
    list.textContent = '';
    for (const p of h.points) {
      const li = document.createElement('li');
      li.dataset.version = p.version;
      li.dataset.trigger = p.trigger;
      const b = document.createElement('button');
      b.className = 'link';
      b.textContent = `v${p.version}`;
      b.title = `show the room at version ${p.version}`;
      b.addEventListener('click', () => show(p.version));
      const span = document.createElement('span');
      span.textContent = `${p.trigger} · ${fmtTime(p.created_at)}`;
      li.append(b, span);
      list.append(li);
    }
  }

  // loadPoints lists the snapshots and checkpoints: the quick stops of the
  // slider, and the oldest version still kept (ops are kept back to the
  // oldest of them).
  async function loadPoints() {
    const room = h.room;
    try {
      const res = await ls().api('GET', `/rooms/${enc(room)}/snapshots`);
      if (room !== h.room) return;
      h.points = res.snapshots;
      h.oldest = h.points.length ? h.points[h.points.length - 1].version : 0;
      renderPoints();
      renderPanel();
    } catch (e) {
      showProblem('Could not list the history', e);
    }
  }

  function showProblem(what, e) {
    $('history-diff').textContent = `${what}: ${ls().describe(e)}`;
    $('history-diff').dataset.state = 'error';
  }

  // show reads the graph at version and its diff against now, and shows
  // it on the canvas: removed since in red, changed since in amber, added
  // since (not there yet at that version) dashed in green.
  async function show(version) {
    const room = h.room;
    const n = ++h.loading;
    const base = `/rooms/${enc(room)}`;
    try {
      const [g, d] = await Promise.all([
        ls().api('GET', `${base}/graph?version=${version}`),
        ls().api('GET', `${base}/diff?from=${version}`),
      ]);
      if (room !== h.room || n !== h.loading) return;
      const marks = new Map();
      for (const x of d.nodes.removed) marks.set(x.id, 'removed');
      for (const x of d.edges.removed) marks.set(x.id, 'removed');
      for (const x of d.nodes.changed) marks.set(x.id, 'changed');
      for (const x of d.edges.changed) marks.set(x.id, 'changed');
      for (const x of d.nodes.added) marks.set(x.id, 'added');
      for (const x of d.edges.added) marks.set(x.id, 'added');
      h.shown = version;
      $('history-slider').value = String(version);
      ls().showPast(version, [...g.nodes, ...d.nodes.added], [...g.edges, ...d.edges.added], marks);
      const count = (k) => d.nodes[k].length + d.edges[k].length;
      const out = $('history-diff');
      out.dataset.state = 'ok';
      out.textContent = version === d.to ? `v${version} is the current version.`
        : `Since v${version}: ${count('added')} added, ${count('removed')} removed, ${count('changed')} changed (to v${d.to}).`;
      renderPanel();
    } catch (e) {
      if (room !== h.room || n !== h.loading) return;
      showProblem(`Could not show v${version}`, e);
    }
  }

  function live() {
    h.loading++;
    h.shown = null;
    $('history-diff').textContent = '';
    ls().showLive();
    renderPanel();
  }

  function restore() {
    const version = h.shown;
    if (version === null) return;
    const dlg = $('confirm');
    $('confirm-text').textContent = `Restore the room to version ${version}? Everyone in the room sees the change; ` +
      'the versions in between are kept, so this can be undone the same way.';
    dlg.returnValue = '';
    dlg.onclose = async () => {
      if (dlg.returnValue !== 'ok') return;
      try {
        ls().restoring(1);
        let r;
        try {
          r = await ls().api('POST', `/rooms/${enc(h.room)}/restore`, { version });
        } finally {
          ls().restoring(-1);
        }
        ls().noteReset(r.version, `restored version ${version}, now v${r.version}`, true);
        live();
        loadPoints();
      } catch (e) {
        showProblem(`Could not restore v${version}`, e);
      }
    };
    dlg.showModal();
    $('confirm-cancel').focus();
  }

  document.addEventListener('liveshare:version', (ev) => {
    const { room, version } = ev.detail;
    if (room !== h.room) {
      h.room = room;
      h.points = [];
      h.oldest = 0;
      h.shown = null;
      h.loading++;
      $('history-diff').textContent = '';
      $('history-points').textContent = '';
      loadPoints();
    }
    h.version = version;
    renderPanel();
  });

  document.addEventListener('DOMContentLoaded', () => {
    const slider = $('history-slider');
    // Reading a version per slider step would flood the server while the
    // thumb moves: the version is read when the thumb is let go.
    slider.addEventListener('input', () => { $('history-at').textContent = `v${slider.value} of v${h.version}`; });
    slider.addEventListener('change', () => {
      const v = Number(slider.value);
      if (v === h.version && h.shown === null) return;
      show(v);
    });
    $('history-live').addEventListener('click', live);
    $('history-restore').addEventListener('click', restore);
    $('history-refresh').addEventListener('click', loadPoints);
  });
})();
