// cursors.js: others' pointers and selections on the canvas, and this
// tab's sent to them. The pointer's position in graph coordinates and the
// selected node ids go to PATCH /rooms/{room}/presence/{presence_id} (at
// most every 50 ms, only while the stream is live: presence is ephemeral,
// nothing is queued); presence events bring every user's state back: each
// other user's cursor is drawn as an arrow with its name, and the nodes it
// selected outlined, in a colour of its own. Clicking a name in the header
// follows that user: the view keeps its pointer in the middle until Esc,
// or until this user pans, zooms or drags.
const SVGNS = 'http://www.w3.org/2000/svg';
const SEND_EVERY_MS = 50;

/** A colour of its own for each user, from its id. @param {string} id */
export function colourOf(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}

function start() {
  const ls = window.liveshare;
  const svg = document.getElementById('canvas');
  const layer = document.getElementById('cursors');
  if (!ls || !svg || !layer) return;
  /** @type {Map<string, SVGGElement>} */
  const drawn = new Map();
  let pending = null, timer = null, lastSent = '';

  async function send() {
    timer = null;
    const room = ls.room();
    if (!pending || !room.id || ls.state().conn !== 'live') return;
    const body = JSON.stringify(pending);
    pending = null;
    if (body === lastSent) return;
    lastSent = body;
    try {
      await ls.api('PATCH', `/rooms/${encodeURIComponent(room.id)}/presence/${ls.presenceId}`, JSON.parse(body));
    } catch (e) {
      lastSent = ''; // throttled or gone: the next move sends again
    }
  }

  function queue(part) {
    pending = { ...(pending || {}), ...part };
    if (!timer) timer = setTimeout(send, SEND_EVERY_MS);
  }

  svg.addEventListener('pointermove', (ev) => {
    if (!ls.room().id) return;
    const w = ls.toWorld(ev.clientX, ev.clientY);
    queue({ cursor: { x: Math.round(w.x), y: Math.round(w.y) } });
  });

  // This user's selection, sent when it changes; others' drawn.
  let sentSelection = '';
  /** @type {Map<string, string>} node id → the colour of who selected it */
  let othersSelect = new Map();
  function outline() {
    for (const g of document.querySelectorAll('#nodes g.node')) {
      const c = othersSelect.get(g.dataset.id);
      g.classList.toggle('others-sel', !!c);
      if (c) g.style.setProperty('--sel', c); else g.style.removeProperty('--sel');
    }
  }
  document.addEventListener('liveshare:drawn', () => {
    const sel = ls.selectedNodes().slice(0, 200);
    const key = sel.join(',');
    if (key !== sentSelection) {
      sentSelection = key;
      queue({ selection: sel.length ? sel : null });
    }
    outline();
  });

  // Following another user.
  let following = null;
  const hint = document.getElementById('hint');
  function follow(id, name) {
    following = id;
    hint.textContent = id ? `following ${name} (Esc stops)` : '';
    document.body.classList.toggle('following', !!id);
  }
  document.getElementById('presence').addEventListener('click', (ev) => {
    const li = ev.target instanceof Element && ev.target.closest('li[data-user]');
    if (!li || li.classList.contains('me')) return;
    follow(li.dataset.user === following ? null : li.dataset.user, li.querySelector('bdi').textContent);
  });
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && following) follow(null); });
  for (const type of ['pointerdown', 'wheel']) svg.addEventListener(type, () => { if (following) follow(null); }, { passive: true });

  document.addEventListener('liveshare:presence', (ev) => {
    const { users, presenceId } = ev.detail;
    const seen = new Set();
    for (const u of users) {
      if (u.presence_id === presenceId || !u.state || !u.state.cursor) continue;
      seen.add(u.id);
      let g = drawn.get(u.id);
      if (!g) {
        g = document.createElementNS(SVGNS, 'g');
        g.setAttribute('class', 'cursor');
        g.dataset.user = u.id;
        const arrow = document.createElementNS(SVGNS, 'path');
        arrow.setAttribute('d', 'M0,0 L0,16 L4.5,12 L8,19 L10.5,18 L7,11 L12.5,11 z');
        arrow.setAttribute('fill', colourOf(u.id));
        const name = document.createElementNS(SVGNS, 'text');
        name.setAttribute('x', 14);
        name.setAttribute('y', 24);
        name.setAttribute('fill', colourOf(u.id));
        g.append(arrow, name);
        layer.append(g);
        drawn.set(u.id, g);
      }
      const name = g.querySelector('text');
      if (name.textContent !== u.name) name.textContent = u.name;
      g.setAttribute('transform', `translate(${u.state.cursor.x},${u.state.cursor.y})`);
    }
    for (const [id, g] of drawn) {
      if (!seen.has(id)) { g.remove(); drawn.delete(id); }
    }
    othersSelect = new Map();
    for (const u of users) {
      if (u.presence_id === presenceId || !u.state || !u.state.selection) continue;
      for (const id of u.state.selection) othersSelect.set(id, colourOf(u.id));
    }
    outline();
    const f = following && users.find((u) => u.id === following);
    if (following && !f) follow(null); // gone
    else if (f && f.state && f.state.cursor) ls.centerOn(f.state.cursor.x, f.state.cursor.y);
  });
}

start();
