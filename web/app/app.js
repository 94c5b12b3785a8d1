// LiveShare's browser page: a live collaborative graph editor over the REST
// API and the room's event stream. Plain JavaScript and SVG, no build step,
// nothing fetched from anywhere but the service.
//
// The rules the page follows are the server's: the server's version is the
// truth; a snapshot or reset event replaces the state; ops with
// seq <= the page's version are ignored, an op with seq > version+1 is a gap
// and the page reloads from GET /graph; its own ops are recognised by
// client_id. Edits are sent as ops and drawn when the server's event brings
// them back, except a drag, whose end position is shown at once until the
// server has it (or refused it).
import { OpQueue } from './liveshare.js';
import { invert, stillApplies, UndoStack } from './undo.js';

(() => {
  const $ = (id) => document.getElementById(id);
  const SVGNS = 'http://www.w3.org/2000/svg';
  const NODE_W = 190, HEAD_H = 30, ROW_H = 18;

  function randomId(n) {
    const a = new Uint8Array(n);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
  }

  // presenceId names this tab's stream, for PATCH …/presence (cursors.js);
  // the client_id of its ops carries it, so that others' pages can name
  // who made a change from the presence list.
  const presenceId = 'p' + randomId(15);
  const clientId = 'web-' + presenceId;
  const pageLoadId = randomId(8);

  const st = {
    roomId: null,
    roomName: '',
    version: 0,
    nodes: new Map(),
    edges: new Map(),
    es: null,
    conn: 'idle', // idle | connecting | catching-up | live | reconnecting | closed
    target: 0, // the room's version when the stream (re)opened: live once reached
    reloading: false,
    queue: [], // events that arrived during a reload
    users: [],
    selected: null, // {type: 'node'|'edge', id}
    multi: new Set(), // more selected nodes: Ctrl-click, Shift-drag a box
    restoring: 0, // this page's restore requests in flight
    pendingMoves: new Map(), // node id -> {x, y, version}: a drag the server has not sent back yet
    recovery: null, // the snapshot or reset the page's state comes from
    resumed: null, // the last resume from the op log after a drop
    opens: 0, // how many times the stream opened
    view: { x: 40, y: 40, k: 1 },
    fitted: false,
    connectFrom: null,
    gesture: null, // drag | pan | connect in progress
    retryTimer: null,
    snapTimer: null,
    focusLabel: null, // node id whose label input gets the focus when it arrives
    roomsCursor: null,
    mode: null, // 'open' | 'jwt', from GET /session
    me: null, // the signed-in caller (GET /session), null when signed out
    role: null, // the caller's role in the open room: viewer | editor | owner
  };

  // The roles in order: each may do what the ones below it may.
  const RANK = { viewer: 1, editor: 2, owner: 3 };
  const can = (role) => (RANK[st.role] || 0) >= RANK[role];

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(method, path, body, headers = {}) {
    const init = { method, headers: { Accept: 'application/json', ...headers } };
    // The server takes only JSON on POST, PUT and PATCH, even without a
    // body: that is what keeps other sites' forms out.
    if (body !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH') {
      init.headers['Content-Type'] = 'application/json';
    }
    if (body !== undefined) init.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { detail: 'the service cannot be reached', code: 'network_error' });
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!res.ok) {
      throw new ApiError(res.status, data && typeof data === 'object' ? data : { detail: text.trim() || res.statusText });
    }
    return data;
  }

  function describe(err) {
    if (err instanceof ApiError) {
      const p = err.problem;
      let s = p.detail || p.title || 'request failed';
      if (p.code) s += ` (${p.code}${err.status ? ', HTTP ' + err.status : ''})`;
      return s;
    }
    return String((err && err.message) || err);
  }

  // ---------- messages ----------

  function banner(text, cls, ttl) {
    const box = document.createElement('div');
    box.className = 'error' + (cls ? ' ' + cls : '');
    const span = document.createElement('span');
    span.textContent = text;
    const close = document.createElement('button');
    close.textContent = '×';
    close.title = 'dismiss';
    close.addEventListener('click', () => box.remove());
    box.append(span, close);
    $('errors').append(box);
    while ($('errors').children.length > 4) $('errors').firstChild.remove();
    if (ttl) setTimeout(() => box.remove(), ttl);
  }
  const showError = (what, err) => banner(`${what}: ${describe(err)}`, '', 20000);
  const showInfo = (text) => banner(text, 'info', 6000);

  // noteReset writes one activity line per restore (by the version it
  // made), whether the reset event or this page's own answer comes first.
  const loggedResets = new Set();
  function noteReset(version, text, mine) {
    const key = `${st.roomId}@${version}`;
    if (loggedResets.has(key)) return;
    loggedResets.add(key);
    activity(text, mine);
  }

  function activity(text, mine) {
    const li = document.createElement('li');
    // Who, isolated: a right-to-left name cannot reorder the line.
    const who = document.createElement('bdi');
    who.textContent = mine ? 'you' : (st.author || 'someone');
    li.append(`${new Date().toLocaleTimeString()} `, who, `: ${text}`);
    if (mine) li.className = 'mine';
    const list = $('activity');
    list.prepend(li);
    while (list.children.length > 50) list.lastChild.remove();
  }

  // ---------- rooms ----------

  async function loadRooms(more) {
    try {
      let path = '/rooms?limit=50';
      if (more && st.roomsCursor) path += '&cursor=' + encodeURIComponent(st.roomsCursor);
      const page = await api('GET', path);
      const list = $('rooms');
      if (!more) list.textContent = '';
      for (const r of page.rooms) {
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = '/?room=' + r.id;
        a.dataset.id = r.id;
        if (r.id === st.roomId) a.className = 'current';
        a.textContent = r.name || '(unnamed room)';
        const small = document.createElement('small');
        small.textContent = `v${r.version} · ${r.element_count} elements · ${r.subscribers} here`;
        a.append(small);
        a.addEventListener('click', (ev) => {
          ev.preventDefault();
          openRoom(r.id, true);
        });
        li.append(a);
        list.append(li);
      }
      st.roomsCursor = page.next_cursor || null;
      $('rooms-more').hidden = !st.roomsCursor;
    } catch (e) {
      showError('Could not list the rooms', e);
    }
  }

  async function createRoom(name) {
    try {
      const r = await api('POST', '/rooms', { name });
      $('new-room-name').value = '';
      await openRoom(r.id, true);
      loadRooms(false);
    } catch (e) {
      showError('Could not create the room', e);
    }
  }

  function roomFromURL() {
    const q = new URLSearchParams(location.search).get('room');
    if (q) return q;
    const h = location.hash.replace(/^#/, '');
    if (h.includes('=')) return new URLSearchParams(h).get('room');
    return h || null;
  }

  // ---------- who is calling ----------

  // tokenFromFragment takes a token given as /#token=… and removes it from
  // the address bar at once: a fragment never reaches a server, but the
  // address bar is shown, shared and kept in the history.
  function tokenFromFragment() {
    const h = location.hash.replace(/^#/, '');
    if (!h.includes('token=')) return null;
    const params = new URLSearchParams(h);
    const token = params.get('token');
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return token;
  }

  // signIn turns a token into the session cookie, which the event stream
  // (EventSource cannot send headers) and every later request carry.
  async function signIn(token) {
    try {
      await api('POST', '/session', undefined, { Authorization: 'Bearer ' + token.trim() });
      return true;
    } catch (e) {
      showError('Could not sign in', e);
      return false;
    }
  }

  // loadSession learns the mode and who is signed in.
  async function loadSession() {
    try {
      st.me = await api('GET', '/session');
      st.mode = st.me.mode;
    } catch (e) {
      st.me = null;
      if (e.status === 401) st.mode = 'jwt';
      else showError('Could not reach the service', e);
    }
  }

  function renderSession() {
    const jwt = st.mode === 'jwt';
    const out = jwt && !st.me;
    $('me').hidden = jwt;
    $('signed-in').hidden = !jwt || out;
    $('who').textContent = st.me ? st.me.name || st.me.subject : '';
    $('signin').hidden = !out;
    document.querySelector('main.layout').hidden = out;
    $('create-room').hidden = jwt && !(st.me && (st.me.create_rooms || st.me.admin));
  }

  async function signOut() {
    try {
      await api('DELETE', '/session');
    } catch (e) {
      showError('Could not sign out', e);
    }
    closeStream();
    Object.assign(st, { me: null, roomId: null, role: null });
    history.pushState(null, '', '/');
    renderSession();
    render();
  }

  // start shows the rooms and opens the one in the address, once the page
  // may call the service.
  function start() {
    renderSession();
    if (st.mode === 'jwt' && !st.me) return;
    render();
    loadRooms(false);
    const id = roomFromURL();
    if (id) openRoom(id, false);
  }

  // accessEnded runs on auth_expired: the token expired or the room's
  // owners took the role away. The page stops the stream (EventSource would
  // reconnect by itself) and asks again: a signed-out page asks for a token,
  // a signed-in one tries the room again (and says if it is gone).
  async function accessEnded() {
    const id = st.roomId;
    closeStream();
    setConn('closed', 'access ended');
    banner('Your access to this room ended: the token expired or your role was taken away.', '', 20000);
    await loadSession();
    renderSession();
    if (st.me && id && st.roomId === id) openRoom(id, false);
  }

  async function openRoom(id, push) {
    if (push) history.pushState(null, '', '/?room=' + encodeURIComponent(id));
    closeStream();
    Object.assign(st, {
      roomId: id, roomName: '', version: 0, nodes: new Map(), edges: new Map(), target: 0,
      reloading: false, queue: [], users: [], selected: null, multi: new Set(), pendingMoves: new Map(),
      recovery: null, resumed: null, opens: 0, fitted: false, connectFrom: null, gesture: null, past: null,
      deleted: false,
    });
    openOutbox(id);
    undo.clear();
    for (const a of document.querySelectorAll('#rooms a')) a.classList.toggle('current', a.dataset.id === id);
    $('activity').textContent = '';
    $('snapshots').textContent = '';
    $('members').textContent = '';
    st.role = null;
    render();
    try {
      const r = await api('GET', `/rooms/${encodeURIComponent(id)}`);
      if (st.roomId !== id) return;
      st.roomName = r.name;
      st.role = r.role || 'owner';
    } catch (e) {
      if (st.roomId !== id) return;
      showError('Could not open the room', e);
      setConn('closed', 'not open');
      return;
    }
    connect(null);
    loadSnapshots();
    loadMembers();
    clearInterval(st.snapTimer);
    // Snapshots are also taken in the background: refresh the panel now
    // and then, while the stream is live (an outage is shown once, by the
    // connection state, not by a failing refresh every 15 s).
    st.snapTimer = setInterval(() => { if (st.conn === 'live') loadSnapshots(); }, 15000);
    render();
  }

  // ---------- the event stream ----------

  function setConn(state, text) {
    st.conn = state;
    if (state === 'live') flushOutbox();
    // Who is here, and where their pointers are, is only known while the
    // stream is open: shown as stale otherwise.
    document.body.classList.toggle('stale-presence', state === 'reconnecting' || state === 'closed');
    const el = $('conn');
    el.dataset.state = state;
    el.textContent = text || {
      idle: 'no room open', connecting: 'connecting…', 'catching-up': 'catching up…',
      live: 'live', reconnecting: 'reconnecting…', closed: 'disconnected',
    }[state];
  }

  function closeStream() {
    clearTimeout(st.retryTimer);
    clearInterval(st.snapTimer);
    if (st.es) {
      st.es.close();
      st.es = null;
    }
    setConn('idle');
  }

  function myName() {
    if (st.mode === 'jwt' && st.me) return st.me.name || st.me.subject; // the server names us from the token
    return $('my-name').value.trim() || 'guest';
  }

  // connect opens the room's stream; from >= 0 resumes after that version
  // (the server sends the ops after it, or a snapshot when they are gone).
  function connect(from) {
    if (st.es) st.es.close();
    clearTimeout(st.retryTimer);
    let url = `/rooms/${encodeURIComponent(st.roomId)}/events?name=${encodeURIComponent(myName())}&presence_id=${presenceId}`;
    if (from !== null) url += '&last_event_id=' + from;
    const es = new EventSource(url);
    st.es = es;
    setConn(from === null ? 'connecting' : 'reconnecting');
    es.onopen = () => {
      if (es !== st.es) return;
      st.opens++;
      if (st.opens > 1) {
        st.resumed = { version: st.version, at: new Date() };
        loadSnapshots(); // some may have been taken while the page was away
      }
      setConn('catching-up');
      renderRecovery();
      fetchTarget(es);
    };
    es.onerror = () => {
      if (es !== st.es) return;
      if (es.readyState === EventSource.CLOSED) {
        streamFailed();
      } else {
        // The browser reconnects by itself, sending Last-Event-ID.
        setConn('reconnecting');
      }
    };
    es.addEventListener('auth_expired', () => {
      if (es === st.es) accessEnded();
    });
    for (const type of ['snapshot', 'reset', 'ops', 'presence', 'room_deleted']) {
      es.addEventListener(type, (ev) => {
        if (es !== st.es) return;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch (e) {
          showError('An event could not be read', e);
          return;
        }
        if (st.reloading && type !== 'presence') {
          st.queue.push([type, data]);
          return;
        }
        handleEvent(type, data);
        render();
      });
    }
  }

  // fetchTarget learns the room's version when the stream opened: the page
  // is caught up, and live, once it has reached it.
  async function fetchTarget(es) {
    try {
      const r = await api('GET', `/rooms/${encodeURIComponent(st.roomId)}`);
      if (es !== st.es) return;
      st.target = r.version;
      st.roomName = r.name;
      checkLive();
      renderHeader();
    } catch (e) {
      // The stream itself reports what is wrong.
    }
  }

  function checkLive() {
    if (st.conn === 'catching-up' && !st.reloading && st.version >= st.target) setConn('live');
  }

  // streamFailed runs when the browser gave up on the stream (an error
  // answer rather than a dropped connection): say why, and try again unless
  // the room is gone.
  async function streamFailed() {
    const id = st.roomId;
    setConn('closed');
    try {
      await api('GET', `/rooms/${encodeURIComponent(id)}`);
    } catch (e) {
      if (st.roomId !== id) return;
      if (e.status === 401) {
        await loadSession();
        renderSession();
        return;
      }
      if (e.status === 404 || e.status === 400) {
        showError('The room cannot be followed', e);
        return;
      }
      showError('The event stream failed', e);
    }
    if (st.roomId !== id) return;
    setConn('reconnecting');
    st.retryTimer = setTimeout(() => { if (st.roomId === id) connect(st.version); }, 2000);
  }

  // authorOf names the author of an op from its client_id: a page's is
  // 'web-' + its presence id, found in the presence list; an API client's
  // is what it chose.
  function authorOf(cid) {
    if (!cid) return 'an API client';
    if (cid.startsWith('web-')) {
      const u = st.users.find((x) => x.presence_id === cid.slice(4));
      return u ? u.name : 'someone who left';
    }
    return cid;
  }

  function handleEvent(type, data) {
    switch (type) {
      case 'snapshot':
        setState(data.state, data.version);
        st.recovery = { kind: 'snapshot', id: data.snapshot_id, version: data.version, created_at: data.created_at, count: data.element_count, at: new Date(), reconnected: st.opens > 1 };
        st.resumed = null;
        if (st.recovery.reconnected) activity(`recovered from ${data.snapshot_id ? 'snapshot v' + data.version : 'the start'} after reconnecting`, false);
        renderRecovery();
        break;
      case 'reset':
        if (data.version <= st.version) break; // already in the graph we reloaded
        setState(data.state, data.version);
        st.resumed = null;
        st.recovery = { kind: 'reset', id: data.snapshot_id, version: data.version, created_at: data.created_at, count: data.element_count, at: new Date() };
        renderRecovery();
        // Once per restore: this page's own is named by the answer to its
        // request or, when the event comes first, while it waits for it.
        noteReset(data.version, `restored a snapshot, now v${data.version}`, st.restoring > 0);
        showInfo(`The room was restored from a snapshot (now version ${data.version}).`);
        loadSnapshots();
        break;
      case 'ops':
        for (const e of data.ops) {
          if (e.seq <= st.version) continue; // already applied
          if (e.seq !== st.version + 1) {
            reload(`missed ops ${st.version + 1}–${e.seq - 1}`);
            return;
          }
          st.author = authorOf(e.client_id);
          applyOp(e.op, e.client_id === clientId);
          st.author = null;
          st.version = e.seq;
        }
        for (const [id, pm] of st.pendingMoves) {
          if (pm.version !== null && st.version >= pm.version) st.pendingMoves.delete(id);
        }
        break;
      case 'presence':
        st.users = data.users || [];
        st.present = data.count ?? st.users.length; // users lists at most 100
        document.dispatchEvent(new CustomEvent('liveshare:presence', { detail: { users: st.users, presenceId } }));
        renderPresence();
        renderHeader();
        return;
      case 'room_deleted':
        st.deleted = true;
        showError('Room closed', new Error('this room was deleted'));
        st.es && st.es.close();
        st.es = null;
        setConn('closed', 'room deleted');
        return;
    }
    checkLive();
  }

  // reload replaces the state with GET /graph after a gap; events that
  // arrive meanwhile are applied after it by the same rules.
  async function reload(why) {
    if (st.reloading) return;
    const id = st.roomId;
    st.reloading = true;
    setConn('catching-up');
    activity(`reloading the graph (${why})`, true);
    try {
      const g = await api('GET', `/rooms/${encodeURIComponent(id)}/graph`);
      if (st.roomId !== id) return;
      if (g.version >= st.version) setState(g, g.version);
    } catch (e) {
      showError('Could not reload the graph', e);
    } finally {
      if (st.roomId === id) {
        st.reloading = false;
        const q = st.queue;
        st.queue = [];
        for (const [t, d] of q) handleEvent(t, d);
        checkLive();
        render();
      }
    }
  }

  function setState(state, version) {
    st.nodes = new Map((state.nodes || []).map((n) => [n.id, n]));
    st.edges = new Map((state.edges || []).map((e) => [e.id, e]));
    st.version = version;
    for (const [id, pm] of st.pendingMoves) {
      if (!st.nodes.has(id) || (pm.version !== null && version >= pm.version)) st.pendingMoves.delete(id);
    }
    if (st.selected && !(st.selected.type === 'node' ? st.nodes : st.edges).has(st.selected.id)) st.selected = null;
  }

  // mergePatch is RFC 7396, as the server applies it.
  function mergePatch(target, patch) {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
    const out = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = mergePatch(out[k], v);
    }
    return out;
  }

  function applyOp(op, mine) {
    const name = (id) => {
      const n = st.nodes.get(id) || st.edges.get(id);
      return n && n.label ? `${n.label}` : id;
    };
    switch (op.op) {
      case 'add_node':
        st.nodes.set(op.node.id, { data: {}, ...op.node });
        activity(`added ${op.node.kind || 'node'} ${op.node.label || op.node.id}`, mine);
        if (!mine && st.conn === 'live') flash(op.node.id);
        if (mine && st.focusLabel === op.node.id) {
          st.selected = { type: 'node', id: op.node.id };
        }
        break;
      case 'update_node': {
        const n = st.nodes.get(op.id);
        if (!n) break;
        const before = n.label;
        st.nodes.set(op.id, { ...mergePatch(n, op.patch), id: op.id });
        const what = 'label' in op.patch ? `renamed ${before} to ${op.patch.label}`
          : ('x' in op.patch || 'y' in op.patch) && Object.keys(op.patch).length <= 2 ? `moved ${n.label}` : `changed ${n.label}`;
        activity(what, mine);
        if (!mine && st.conn === 'live') flash(op.id);
        break;
      }
      case 'remove_node':
        activity(`deleted ${name(op.id)}`, mine);
        st.nodes.delete(op.id);
        for (const [id, e] of st.edges) if (e.source === op.id || e.target === op.id) st.edges.delete(id);
        break;
      case 'add_edge':
        st.edges.set(op.edge.id, { data: {}, ...op.edge });
        activity(`connected ${name(op.edge.source)} → ${name(op.edge.target)}`, mine);
        break;
      case 'update_edge': {
        const e = st.edges.get(op.id);
        if (e) st.edges.set(op.id, { ...mergePatch(e, op.patch), id: op.id });
        activity(`changed edge ${name(op.id)}`, mine);
        break;
      }
      case 'remove_edge':
        activity(`deleted edge ${name(op.id)}`, mine);
        st.edges.delete(op.id);
        break;
      case 'reset':
        setState(op.state || {}, st.version);
        activity('restored a snapshot', mine);
        break;
    }
    if (st.selected && !(st.selected.type === 'node' ? st.nodes : st.edges).has(st.selected.id)) st.selected = null;
  }

  const flashing = new Set();
  function flash(id) {
    flashing.add(id);
    setTimeout(() => { flashing.delete(id); render(); }, 700);
  }

  // ---------- sending ops ----------

  // The outbox: ops are queued (in localStorage, per room, so that a
  // reload keeps them) and posted in order, each batch with its own
  // Idempotency-Key on every try, while the stream is live. An edit made
  // during an outage waits, shown as pending, and lands once when the
  // service is back; a refusal is shown and the batch dropped.
  const outbox = { queue: new OpQueue(null, ''), waiting: new Map(), flushing: false, retry: null };

  function openOutbox(id) {
    for (const w of outbox.waiting.values()) w(null);
    outbox.waiting.clear();
    let storage = null;
    try { storage = window.localStorage; } catch (e) { storage = null; }
    outbox.queue = new OpQueue(storage, `liveshare:outbox:${id}`);
    for (const b of outbox.queue.batches) outbox.waiting.set(b.key, () => {});
    renderPending();
  }

  function renderPending() {
    const n = outbox.queue.length;
    const el = $('pending');
    el.hidden = n === 0;
    el.textContent = n === 1 ? '1 edit pending' : `${n} edits pending`;
  }

  // undo holds the inverses of this page's changes (undo.js).
  const undo = new UndoStack();

  function postOps(ops, what, undoable = true) {
    if (!can('editor')) {
      banner(`Your role in this room is ${st.role}: you can look, not change.`, 'info', 4000);
      return Promise.resolve(null);
    }
    if (!st.roomId) return Promise.resolve(null);
    if (undoable) undo.record(invert(ops, st));
    const b = outbox.queue.push(ops);
    b.what = what;
    const p = new Promise((resolve) => outbox.waiting.set(b.key, resolve));
    renderPending();
    flushOutbox();
    return p;
  }

  async function flushOutbox() {
    if (outbox.flushing) return;
    outbox.flushing = true;
    const q = outbox.queue;
    try {
      while (st.conn === 'live' && q === outbox.queue && q.length > 0) {
        const b = q.batches[0];
        let res = null;
        try {
          res = await api('POST', `/rooms/${encodeURIComponent(st.roomId)}/ops`,
            { client_id: clientId, ops: b.ops }, { 'Idempotency-Key': b.key });
        } catch (e) {
          if (e.status === 0 || e.status >= 500 || e.status === 429 || e.status === 408) {
            // Not refused, not taken: try again shortly (the stream
            // says when the service is back).
            clearTimeout(outbox.retry);
            outbox.retry = setTimeout(flushOutbox, 1000);
            break;
          }
          showError(b.what || 'Could not apply the change', e);
        }
        q.remove(b.key);
        const w = outbox.waiting.get(b.key);
        outbox.waiting.delete(b.key);
        if (w) w(res);
        renderPending();
      }
    } finally {
      outbox.flushing = false;
      renderPending();
    }
  }

  // selectedNodes lists the selected nodes (one, or several).
  function selectedNodes() {
    const ids = new Set([...st.multi].filter((id) => st.nodes.has(id)));
    if (st.selected && st.selected.type === 'node' && st.nodes.has(st.selected.id)) ids.add(st.selected.id);
    return [...ids];
  }

  // undoLast posts the inverse of the last change (or, redoing, of the
  // last undo), for what of it still applies.
  function undoLast(redo) {
    const from = redo ? undo.redos : undo.undos, to = redo ? undo.undos : undo.redos;
    const inv = from.pop();
    if (!inv) {
      showInfo(redo ? 'Nothing to redo.' : 'Nothing to undo.');
      return null;
    }
    const ops = stillApplies(inv, st);
    if (!ops.length) {
      showInfo(`Nothing to ${redo ? 'redo' : 'undo'}: others changed it since.`);
      return null;
    }
    const back = invert(ops, st);
    if (back) to.push(back);
    activity(redo ? 'redo' : 'undo', true);
    return postOps(ops, redo ? 'Could not redo' : 'Could not undo', false);
  }

  function viewCenter() {
    const r = $('canvas').getBoundingClientRect();
    return toWorld(r.left + r.width / 2, r.top + r.height / 2);
  }

  // freeSpot is the place nearest to p (searched outwards, on a grid) where
  // a new node of height h overlaps no other node, with a margin.
  function freeSpot(p, h) {
    // The nodes there are, and those this page added that are on their way.
    const queued = outbox.queue.batches.flatMap((b) => b.ops).filter((o) => o.op === 'add_node').map((o) => o.node);
    const boxes = [...st.nodes.values(), ...queued].map(box);
    const m = 16;
    const free = (x, y) => boxes.every((b) => x + NODE_W + m <= b.x || b.x + b.w + m <= x || y + h + m <= b.y || b.y + b.h + m <= y);
    const x0 = Math.round(p.x - NODE_W / 2), y0 = Math.round(p.y - 20);
    if (free(x0, y0)) return { x: x0, y: y0 };
    for (let r = 1; r < 60; r++) {
      for (let i = -r; i <= r; i++) {
        for (const [dx, dy] of [[i, -r], [i, r], [-r, i], [r, i]]) {
          const x = x0 + dx * (NODE_W + m) / 2, y = y0 + dy * (h + m) / 2;
          if (free(x, y)) return { x: Math.round(x), y: Math.round(y) };
        }
      }
    }
    return { x: x0, y: y0 };
  }

  async function addNode(kind, at) {
    if (!st.roomId) return;
    const p = at || viewCenter();
    const queued = outbox.queue.batches.flatMap((b) => b.ops).filter((o) => o.op === 'add_node').map((o) => o.node);
    const count = [...st.nodes.values(), ...queued].filter((n) => n.kind === kind).length + 1;
    const data = kind === 'table' ? { columns: [{ name: 'id', type: 'uuid' }] } : {};
    const spot = at ? { x: Math.round(p.x - NODE_W / 2), y: Math.round(p.y - 20) } : freeSpot(p, box({ id: '', data }).h);
    const node = {
      id: `${kind === 'note' ? 'note' : 't'}_${randomId(8)}`,
      kind,
      label: kind === 'note' ? `note ${count}` : `table_${count}`,
      x: spot.x,
      y: spot.y,
      data,
    };
    st.focusLabel = node.id;
    st.selected = { type: 'node', id: node.id };
    await postOps([{ op: 'add_node', node }], `Could not add the ${kind}`);
    render();
  }

  async function addEdge(source, target) {
    const s = st.nodes.get(source), t = st.nodes.get(target);
    const edge = { id: `e_${randomId(8)}`, kind: 'relation', source, target, label: '' };
    if (s && t && s.kind === 'table' && t.kind === 'table') edge.label = `${(t.label || target).replace(/s$/, '')}_id`;
    st.selected = { type: 'edge', id: edge.id };
    await postOps([{ op: 'add_edge', edge }], 'Could not connect the nodes');
    render();
  }

  async function deleteSelected() {
    const ids = selectedNodes();
    if (ids.length > 1) {
      // One batch: all or none, and one undo brings them all back.
      st.selected = null;
      st.multi.clear();
      await postOps(ids.map((id) => ({ op: 'remove_node', id })), `Could not delete the ${ids.length} nodes`);
      render();
      return;
    }
    const sel = st.selected || (ids.length ? { type: 'node', id: ids[0] } : null);
    if (!sel) return;
    st.selected = null;
    st.multi.clear();
    const op = sel.type === 'node' ? { op: 'remove_node', id: sel.id } : { op: 'remove_edge', id: sel.id };
    await postOps([op], `Could not delete the ${sel.type}`);
    render();
  }

  async function moveNode(id, x, y) {
    if (!can('editor')) return;
    x = Math.round(x);
    y = Math.round(y);
    const pm = { x, y, version: null };
    st.pendingMoves.set(id, pm);
    render();
    const res = await postOps([{ op: 'update_node', id, patch: { x, y } }], 'Could not move the node');
    if (st.pendingMoves.get(id) !== pm) return;
    if (!res || st.version >= res.version) st.pendingMoves.delete(id);
    else pm.version = res.version;
    render();
  }

  // ---------- snapshots ----------

  async function loadSnapshots() {
    const id = st.roomId;
    if (!id) return;
    try {
      const res = await api('GET', `/rooms/${encodeURIComponent(id)}/snapshots`);
      if (st.roomId !== id) return;
      const list = $('snapshots');
      list.textContent = '';
      if (!res.snapshots.length) {
        const li = document.createElement('li');
        li.className = 'muted';
        li.textContent = 'none yet';
        list.append(li);
      }
      for (const s of res.snapshots) {
        const li = document.createElement('li');
        li.dataset.id = s.id;
        li.dataset.version = s.version;
        const span = document.createElement('span');
        span.textContent = `v${s.version} · ${s.trigger} · ${fmtTime(s.created_at)} · ${s.element_count} el. · ${fmtBytes(s.size_bytes)}`;
        span.title = s.id;
        const b = document.createElement('button');
        b.className = 'small restore';
        b.textContent = 'Restore';
        b.disabled = !can('owner');
        b.addEventListener('click', () => confirmRestore(s));
        li.append(span, b);
        list.append(li);
      }
    } catch (e) {
      showError('Could not list the snapshots', e);
    }
  }

  function confirmRestore(s) {
    const dlg = $('confirm');
    $('confirm-text').textContent = `Restore the room to snapshot v${s.version} (${s.element_count} elements, taken ${fmtTime(s.created_at)})? ` +
      'Everyone in the room sees the change; the history is kept, so this can be restored back.';
    dlg.returnValue = '';
    dlg.onclose = async () => {
      if (dlg.returnValue !== 'ok') return;
      try {
        st.restoring++;
        let r;
        try {
          r = await api('POST', `/rooms/${encodeURIComponent(st.roomId)}/snapshots/${encodeURIComponent(s.id)}/restore`);
        } finally {
          st.restoring--;
        }
        noteReset(r.version, `restored snapshot v${s.version}, now v${r.version}`, true);
      } catch (e) {
        showError('Could not restore the snapshot', e);
      }
    };
    dlg.showModal();
    $('confirm-cancel').focus();
  }

  // ---------- members ----------

  async function loadMembers() {
    const id = st.roomId;
    if (!id || st.mode !== 'jwt' || !can('owner')) return;
    try {
      const res = await api('GET', `/rooms/${encodeURIComponent(id)}/members`);
      if (st.roomId !== id) return;
      const list = $('members');
      list.textContent = '';
      if (!res.members.length) {
        const li = document.createElement('li');
        li.className = 'muted';
        li.textContent = 'nobody yet: share the room below';
        list.append(li);
      }
      for (const m of res.members) {
        const li = document.createElement('li');
        li.dataset.subject = m.subject;
        li.dataset.role = m.role;
        const span = document.createElement('span');
        span.textContent = `${m.subject} · ${m.role}`;
        const b = document.createElement('button');
        b.className = 'small';
        b.textContent = 'Remove';
        b.addEventListener('click', () => removeMember(m.subject));
        li.append(span, b);
        list.append(li);
      }
    } catch (e) {
      showError('Could not list the members', e);
    }
  }

  async function addMember(ev) {
    ev.preventDefault();
    const subject = $('member-subject').value.trim();
    const role = $('member-role').value;
    if (!subject || !st.roomId) return;
    try {
      await api('PUT', `/rooms/${encodeURIComponent(st.roomId)}/members/${encodeURIComponent(subject)}`, { role });
      $('member-subject').value = '';
      activity(`shared the room with ${subject} as ${role}`, true);
      loadMembers();
    } catch (e) {
      showError('Could not share the room', e);
    }
  }

  async function removeMember(subject) {
    try {
      await api('DELETE', `/rooms/${encodeURIComponent(st.roomId)}/members/${encodeURIComponent(subject)}`);
      activity(`removed ${subject} from the room`, true);
      loadMembers();
    } catch (e) {
      showError('Could not remove the member', e);
    }
  }

  async function takeSnapshot() {
    if (!st.roomId) return;
    try {
      const s = await api('POST', `/rooms/${encodeURIComponent(st.roomId)}/snapshots`);
      activity(`took snapshot v${s.version}`, true);
      loadSnapshots();
    } catch (e) {
      showError('Could not take a snapshot', e);
    }
  }

  function fmtTime(t) {
    if (!t) return '—';
    const d = new Date(t);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function fmtBytes(n) {
    return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} kB`;
  }

  // ---------- geometry and drawing ----------

  function columnsOf(n) {
    const c = n.data && n.data.columns;
    if (!Array.isArray(c)) return [];
    return c.map((col) => (typeof col === 'string' ? { name: col, type: '' } : { name: String(col.name ?? ''), type: String(col.type ?? '') }));
  }

  function box(n) {
    const pm = st.pendingMoves.get(n.id);
    const g = st.gesture;
    let x = n.x, y = n.y;
    if (g && g.kind === 'drag' && g.id === n.id && g.moved) ({ x, y } = g);
    else if (pm) ({ x, y } = pm);
    const cols = columnsOf(n);
    const h = HEAD_H + (cols.length ? cols.length * ROW_H + 8 : 10);
    return { x, y, w: NODE_W, h };
  }

  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.append(e);
    return e;
  }

  // border is where the ray from b's centre towards (tx, ty) leaves b.
  function border(b, tx, ty) {
    const cx = b.x + b.w / 2, cy = b.y + b.h / 2;
    const dx = tx - cx, dy = ty - cy;
    if (!dx && !dy) return { x: cx, y: cy };
    const t = Math.min(dx ? b.w / 2 / Math.abs(dx) : Infinity, dy ? b.h / 2 / Math.abs(dy) : Infinity);
    return { x: cx + dx * t, y: cy + dy * t };
  }

  // render asks for one redraw at the next animation frame: however many
  // events, pointer moves and ops arrive in a frame, the page draws once.
  let frameAsked = false;
  const drawTimes = []; // the last draws' durations, in ms, for the curious
  function render() {
    if (frameAsked) return;
    frameAsked = true;
    requestAnimationFrame(() => {
      frameAsked = false;
      const t0 = performance.now();
      draw();
      drawTimes.push(performance.now() - t0);
      if (drawTimes.length > 200) drawTimes.shift();
    });
  }

  // draw updates the page to the state: the canvas is keyed by element
  // id, and an element's DOM is touched only where what it shows changed
  // (a drag moves one node's transform and its edges' ends).
  function draw() {
    renderHeader();
    const open = !!st.roomId && !st.deleted;
    $('empty').hidden = open;
    // What the role does not allow is disabled; the server refuses it too.
    // While a past version is shown (history.js), the canvas is read-only.
    const edit = open && can('editor') && !st.past;
    for (const b of $('toolbar').querySelectorAll('button')) b.disabled = b.id === 'fit' || b.classList.contains('io') ? !open : !edit;
    $('snap-now').disabled = !edit;
    for (const b of document.querySelectorAll('#snapshots button.restore')) b.disabled = !can('owner');
    for (const f of ['node-label', 'node-kind', 'node-columns', 'edge-label', 'edge-kind']) $(f).readOnly = !edit;
    for (const b of document.querySelectorAll('#node-form button, #edge-form button')) b.disabled = !edit;
    $('members-panel').hidden = !(open && st.mode === 'jwt' && can('owner'));
    const roleEl = $('role');
    roleEl.hidden = !(open && st.mode === 'jwt' && st.role);
    roleEl.textContent = st.role || '';
    roleEl.dataset.role = st.role || '';
    $('viewport').setAttribute('transform', `translate(${st.view.x},${st.view.y}) scale(${st.view.k})`);

    const shownNodes = st.past ? st.past.nodes : st.nodes;
    const shownEdges = st.past ? st.past.edges : st.edges;
    const mark = (g, id) => {
      const m = (st.past && st.past.marks.get(id)) || '';
      if (g.dataset.mark === m) return;
      if (g.dataset.mark) g.classList.remove('diff-' + g.dataset.mark);
      if (m) g.classList.add('diff-' + m);
      g.dataset.mark = m;
    };
    $('canvas').classList.toggle('past', !!st.past);
    const boxes = new Map();
    for (const n of shownNodes.values()) boxes.set(n.id, box(n));

    // Edges between the same two nodes (either way) are drawn side by
    // side, so each can be seen and clicked.
    const pairs = new Map();
    for (const e of shownEdges.values()) {
      const k = e.source < e.target ? `${e.source}\n${e.target}` : `${e.target}\n${e.source}`;
      if (!pairs.has(k)) pairs.set(k, []);
      pairs.get(k).push(e.id);
    }
    const spread = (e) => {
      const list = pairs.get(e.source < e.target ? `${e.source}\n${e.target}` : `${e.target}\n${e.source}`);
      return (list.indexOf(e.id) - (list.length - 1) / 2) * 16;
    };

    const edges = $('edges');
    const seenEdges = new Set();
    for (const e of shownEdges.values()) {
      const a = boxes.get(e.source), b = boxes.get(e.target);
      if (!a || !b) continue;
      seenEdges.add(e.id);
      let p1, p2, d = null;
      if (e.source === e.target) {
        p1 = { x: a.x + a.w - 20, y: a.y };
        p2 = { x: a.x + a.w, y: a.y + 14 };
        d = `M${p1.x},${p1.y} C${p1.x + 10},${p1.y - 40} ${p2.x + 40},${p2.y - 10} ${p2.x},${p2.y}`;
        p1 = { x: p2.x + 20, y: p1.y - 24 };
        p2 = p1;
      } else {
        p1 = border(a, b.x + b.w / 2, b.y + b.h / 2);
        p2 = border(b, a.x + a.w / 2, a.y + a.h / 2);
        const off = spread(e);
        if (off) {
          // The normal of the pair's direction taken one fixed way (lower
          // id first), so opposite edges part rather than swap.
          const [lo, hi] = e.source < e.target ? [p1, p2] : [p2, p1];
          const len = Math.hypot(hi.x - lo.x, hi.y - lo.y) || 1;
          const nx = -(hi.y - lo.y) / len, ny = (hi.x - lo.x) / len;
          p1 = { x: p1.x + nx * off, y: p1.y + ny * off };
          p2 = { x: p2.x + nx * off, y: p2.y + ny * off };
        }
      }
      let k = drawn.edges.get(e.id);
      const shape = d !== null ? 'loop' : 'line';
      if (!k || k.e.source !== e.source || k.e.target !== e.target || k.shape !== shape) {
        if (k) k.g.remove();
        const g = el('g', { class: 'edge', 'data-id': e.id, 'data-source': e.source, 'data-target': e.target }, edges);
        const parts = shape === 'loop'
          ? [el('path', { class: 'hit', fill: 'none' }, g), el('path', { class: 'vis', fill: 'none', stroke: '#7a8594', 'marker-end': 'url(#arrow)' }, g)]
          : [el('line', { class: 'hit' }, g), el('line', { class: 'vis', 'marker-end': 'url(#arrow)' }, g)];
        k = { g, parts, shape, e: null, geo: '', label: null };
        drawn.edges.set(e.id, k);
      }
      const geo = d !== null ? d : `${p1.x},${p1.y},${p2.x},${p2.y}`;
      if (k.geo !== geo) {
        k.geo = geo;
        for (const part of k.parts) {
          if (d !== null) part.setAttribute('d', d);
          else setAttrs(part, { x1: p1.x, y1: p1.y, x2: p2.x, y2: p2.y });
        }
        if (k.label) setAttrs(k.label, { x: (p1.x + p2.x) / 2, y: (p1.y + p2.y) / 2 - 4 });
      }
      if (!k.e || k.e.label !== e.label) {
        if (k.label) { k.label.remove(); k.label = null; }
        if (e.label) {
          k.label = el('text', { x: (p1.x + p2.x) / 2, y: (p1.y + p2.y) / 2 - 4, class: 'label' }, k.g);
          fitText(k.label, e.label, 180);
        }
      }
      k.e = e;
      k.g.classList.toggle('selected', isSelected('edge', e.id));
      mark(k.g, e.id);
    }
    for (const [id, k] of drawn.edges) {
      if (!seenEdges.has(id)) { k.g.remove(); drawn.edges.delete(id); }
    }

    const nodes = $('nodes');
    for (const n of shownNodes.values()) {
      const b = boxes.get(n.id);
      let k = drawn.nodes.get(n.id);
      if (!k) {
        const g = el('g', { 'data-id': n.id }, nodes);
        k = { g, n: null, pos: '' };
        drawn.nodes.set(n.id, k);
      }
      if (k.n !== n) {
        // The node itself changed (ops make new objects): its content
        // is drawn again; a move alone changes only the transform.
        const cls = `node kind-${String(n.kind || 'node').replace(/[^A-Za-z0-9_-]/g, '_')}`;
        const sig = JSON.stringify([n.label, n.kind, columnsOf(n), b.h]);
        if (k.cls !== cls) {
          k.cls = cls;
          k.g.setAttribute('class', cls);
          k.g.dataset.mark = '';
        }
        if (k.sig !== sig) {
          k.sig = sig;
          drawNode(k.g, n, b);
        }
        k.n = n;
      }
      const pos = `translate(${b.x},${b.y})`;
      if (k.pos !== pos) {
        k.pos = pos;
        k.g.setAttribute('transform', pos);
      }
      k.g.classList.toggle('selected', isSelected('node', n.id) || st.multi.has(n.id));
      k.g.classList.toggle('pending', st.pendingMoves.has(n.id));
      k.g.classList.toggle('flash', flashing.has(n.id));
      mark(k.g, n.id);
    }
    for (const [id, k] of drawn.nodes) {
      if (!shownNodes.has(id)) { k.g.remove(); drawn.nodes.delete(id); }
    }
    renderInspector();
    document.dispatchEvent(new CustomEvent('liveshare:drawn', { detail: { boxes } }));
  }

  // drawn is what the canvas shows, by element id.
  const drawn = { nodes: new Map(), edges: new Map() };

  function isSelected(type, id) {
    return !!st.selected && st.selected.type === type && st.selected.id === id;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  }

  function drawNode(g, n, b) {
    g.textContent = '';
    el('rect', { class: 'box', width: b.w, height: b.h }, g);
    el('rect', { class: 'head', x: 1, y: 1, width: b.w - 2, height: HEAD_H - 2, rx: 5 }, g);
    const kind = el('text', { class: 'kind', x: b.w - 8, y: 19 }, g);
    const kw = fitText(kind, n.kind, 70);
    const label = el('text', { class: 'label', x: 10, y: 20 }, g);
    fitText(label, n.label || n.id, b.w - 26 - kw);
    const cols = columnsOf(n);
    if (cols.length) el('line', { class: 'sep', x1: 0, x2: b.w, y1: HEAD_H, y2: HEAD_H }, g);
    cols.forEach((c, i) => {
      const y = HEAD_H + 16 + i * ROW_H;
      const ct = el('text', { class: 'col-type', x: b.w - 10, y }, g);
      const tw = fitText(ct, c.type, 80);
      const cn = el('text', { class: 'col-name', x: 10, y }, g);
      fitText(cn, c.name, b.w - 30 - tw);
    });
  }

  // fitText puts s in the text element t, cut with an ellipsis to what
  // fits in max pixels as the page's font measures it (not a character
  // count), with the whole text as its tooltip when cut. It returns the
  // width used. User text is isolated (CSS unicode-bidi), so a
  // right-to-left override cannot reorder what is drawn beside it.
  const measureCtx = document.createElement('canvas').getContext('2d');
  function fitText(t, s, max) {
    s = String(s ?? '');
    measureCtx.font = getFontFor(t.parentNode && t.parentNode.classList.contains('edge') ? 'edge' : 'node', t.getAttribute('class'));
    const width = (x) => measureCtx.measureText(x).width;
    let w = width(s);
    let shown = s;
    if (w > max) {
      const chars = Array.from(s);
      let lo = 0, hi = chars.length;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (width(chars.slice(0, mid).join('') + '…') <= max) lo = mid; else hi = mid - 1;
      }
      shown = chars.slice(0, lo).join('') + '…';
      w = width(shown);
      const title = document.createElementNS(SVGNS, 'title');
      title.textContent = s;
      t.append(title);
    }
    t.append(document.createTextNode(shown));
    t.dataset.full = s;
    return w;
  }

  // The font of each kind of canvas text, read once from the style sheet.
  const fonts = new Map();
  function getFontFor(kind, cls) {
    const key = kind + ' ' + cls;
    if (!fonts.has(key)) {
      const g = el('g', { class: kind }, $('nodes'));
      const cs = getComputedStyle(el('text', { class: cls || '' }, g));
      fonts.set(key, `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`);
      g.remove();
    }
    return fonts.get(key);
  }

  function renderHeader() {
    $('room-title').textContent = st.roomId ? (st.roomName || '(unnamed room)') : '';
    $('version').textContent = st.roomId ? `v${st.version}` + (st.past ? ` (showing v${st.past.version})` : '') : '';
    if (st.roomId && st.announced !== `${st.roomId}@${st.version}`) {
      // The history panel (history.js) follows the room and its version.
      st.announced = `${st.roomId}@${st.version}`;
      document.dispatchEvent(new CustomEvent('liveshare:version', { detail: { room: st.roomId, version: st.version, role: st.role } }));
    }
    const cur = document.querySelector('#rooms a.current small');
    if (cur && st.conn !== 'idle') cur.textContent = `v${st.version} · ${st.nodes.size + st.edges.size} elements · ${st.present ?? st.users.length} here`;
    document.title = st.roomId ? `${st.roomName || 'room'} · LiveShare` : 'LiveShare';
  }

  function renderPresence() {
    const ul = $('presence');
    ul.textContent = '';
    let meShown = false;
    for (const u of st.users) {
      const li = document.createElement('li');
      // The name is isolated (<bdi>): a right-to-left override in it
      // cannot reverse the "(you)" after it.
      const name = document.createElement('bdi');
      name.textContent = u.name || 'anonymous';
      li.append(name);
      li.title = `connected ${fmtTime(u.connected_at)}`;
      li.dataset.user = u.id;
      if (!meShown && (u.presence_id ? u.presence_id === presenceId : u.name === myName())) {
        li.className = 'me';
        li.append(' (you)');
        meShown = true;
      }
      ul.append(li);
    }
    const more = (st.present ?? st.users.length) - st.users.length;
    if (more > 0) {
      const li = document.createElement('li');
      li.textContent = `+${more} more`;
      ul.append(li);
    }
  }

  function renderRecovery() {
    const r = st.recovery;
    const p = $('recovery');
    let text = '—';
    if (r) {
      const at = r.at.toLocaleTimeString();
      if (r.kind === 'reset') {
        text = `Reset to ${r.id ? 'snapshot' : 'a state'} at v${r.version} (restored ${fmtTime(r.created_at)}, ${r.count} elements).`;
      } else if (!r.id) {
        text = `${r.reconnected ? 'Reconnected' : 'Started'} at ${at} from an empty room (no snapshot yet), then the op log.`;
      } else {
        text = `${r.reconnected ? 'Reconnected; recovered' : 'Started'} from snapshot v${r.version} taken ${fmtTime(r.created_at)} (${r.count} elements) at ${at}, then the op log.`;
      }
    }
    if (st.resumed) text += ` Resumed after v${st.resumed.version} from the op log at ${st.resumed.at.toLocaleTimeString()}, without reloading.`;
    p.textContent = text;
    p.dataset.kind = st.resumed ? 'resumed' : r ? r.kind : '';
    p.dataset.version = r ? r.version : '';
  }

  // renderInspector fills the selection forms, without touching a field
  // the user is typing in.
  function renderInspector() {
    const sel = st.selected;
    const n = sel && sel.type === 'node' ? st.nodes.get(sel.id) : null;
    const e = sel && sel.type === 'edge' ? st.edges.get(sel.id) : null;
    $('no-selection').hidden = !!(n || e);
    const nf = $('node-form'), ef = $('edge-form');
    if (n) {
      if (nf.hidden || nf.dataset.id !== n.id || nf.dataset.version !== String(st.version)) {
        const fresh = nf.dataset.id !== n.id;
        nf.dataset.id = n.id;
        nf.dataset.version = String(st.version);
        const set = (input, v) => { if (fresh || document.activeElement !== input) input.value = v; };
        set($('node-label'), n.label || '');
        set($('node-kind'), n.kind || '');
        set($('node-columns'), columnsOf(n).map(columnLine).join('\n'));
        $('node-id').textContent = n.id;
      }
      nf.hidden = false;
      if (st.focusLabel === n.id) {
        st.focusLabel = null;
        $('node-label').focus();
        $('node-label').select();
      }
    } else {
      nf.hidden = true;
      nf.dataset.id = '';
    }
    if (e) {
      if (ef.hidden || ef.dataset.id !== e.id) {
        ef.dataset.id = e.id;
        $('edge-label').value = e.label || '';
        $('edge-kind').value = e.kind || '';
        $('edge-id').textContent = `${e.id}: ${e.source} → ${e.target}`;
      }
      ef.hidden = false;
    } else {
      ef.hidden = true;
      ef.dataset.id = '';
    }
  }

  // Columns are edited one per line as "name type"; a name with spaces (or
  // quotes) is written as a JSON string: "first name" text.
  function columnLine(c) {
    const name = /^[^\s"]+$/.test(c.name) ? c.name : JSON.stringify(c.name);
    return `${name} ${c.type}`.trim();
  }

  function parseColumns(text) {
    return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const quoted = l.match(/^("(?:[^"\\]|\\.)*")\s*(.*)$/);
      if (quoted) {
        try { return { name: JSON.parse(quoted[1]), type: quoted[2] }; } catch (e) { /* as a plain line */ }
      }
      const [name, ...type] = l.split(/\s+/);
      return { name, type: type.join(' ') };
    });
  }

  // mergeColumns keeps what the form does not show (pk, notes, … set by
  // API clients) on the columns it finds again by name, in their new order.
  function mergeColumns(raw, cols) {
    const old = (Array.isArray(raw) ? raw : []).map((c) => (typeof c === 'string' ? { name: c } : c));
    const used = new Set();
    return cols.map((c) => {
      const i = old.findIndex((o, j) => !used.has(j) && o && o.name === c.name);
      if (i < 0) return c;
      used.add(i);
      return { ...old[i], name: c.name, type: c.type };
    });
  }

  async function saveNode(ev) {
    ev.preventDefault();
    const id = $('node-form').dataset.id;
    const n = st.nodes.get(id);
    if (!n) return;
    const patch = {};
    const label = $('node-label').value, kind = $('node-kind').value;
    if (label !== n.label) patch.label = label;
    if (kind !== n.kind) patch.kind = kind;
    const raw = n.data && n.data.columns;
    const cols = mergeColumns(raw, parseColumns($('node-columns').value));
    if (JSON.stringify(cols) !== JSON.stringify(raw || [])) patch.data = { columns: cols.length ? cols : null };
    if (!Object.keys(patch).length) return;
    await postOps([{ op: 'update_node', id, patch }], 'Could not save the node');
    $('canvas').focus();
  }

  async function saveEdge(ev) {
    ev.preventDefault();
    const id = $('edge-form').dataset.id;
    const e = st.edges.get(id);
    if (!e) return;
    const patch = {};
    if ($('edge-label').value !== e.label) patch.label = $('edge-label').value;
    if ($('edge-kind').value !== e.kind) patch.kind = $('edge-kind').value;
    if (!Object.keys(patch).length) return;
    await postOps([{ op: 'update_edge', id, patch }], 'Could not save the edge');
    $('canvas').focus();
  }

  // ---------- view ----------

  function toWorld(clientX, clientY) {
    const r = $('canvas').getBoundingClientRect();
    return { x: (clientX - r.left - st.view.x) / st.view.k, y: (clientY - r.top - st.view.y) / st.view.k };
  }

  function fit() {
    if (!st.nodes.size) return;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of st.nodes.values()) {
      const b = box(n);
      x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y);
      x1 = Math.max(x1, b.x + b.w); y1 = Math.max(y1, b.y + b.h);
    }
    const r = $('canvas').getBoundingClientRect();
    const pad = 40;
    // No lower bound: Fit fits any graph, however wide.
    const k = Math.min(1, (r.width - 2 * pad) / Math.max(1, x1 - x0), (r.height - 2 * pad) / Math.max(1, y1 - y0));
    st.view = { k, x: (r.width - (x1 - x0) * k) / 2 - x0 * k, y: (r.height - (y1 - y0) * k) / 2 - y0 * k };
    // Drawn at once, not at the next frame: what is under the pointer
    // right after a Fit is what the page shows.
    draw();
  }

  function setHint(text) {
    $('hint').textContent = text || '';
    $('canvas').classList.toggle('connecting', !!st.connectFrom);
    $('connect').classList.toggle('active', !!st.connectFrom);
  }

  function startConnect() {
    if (!st.selected || st.selected.type !== 'node') {
      setHint('select the node to connect from first');
      return;
    }
    st.connectFrom = st.selected.id;
    setHint('click the node to connect to (Esc cancels)');
  }

  function cancelModes() {
    st.connectFrom = null;
    setHint('');
  }

  // ---------- pointer ----------

  function targetOf(ev) {
    const t = ev.target instanceof Element ? ev.target : null;
    const node = t && t.closest('g.node');
    if (node) return { type: 'node', id: node.dataset.id };
    const edge = t && t.closest('g.edge');
    if (edge) return { type: 'edge', id: edge.dataset.id };
    return null;
  }

  function nodeAt(clientX, clientY) {
    const t = document.elementFromPoint(clientX, clientY);
    const g = t && t.closest && t.closest('g.node');
    return g ? g.dataset.id : null;
  }

  // Fingers on the canvas, by pointer id: two make a pinch, which zooms
  // about their midpoint (and cancels a drag the first one began).
  const touches = new Map();

  function pinchStart() {
    const [a, b] = [...touches.values()];
    if (st.gesture && st.gesture.kind === 'box') $('selbox').setAttribute('display', 'none');
    st.gesture = { kind: 'pinch', d0: Math.hypot(a.x - b.x, a.y - b.y) || 1, k0: st.view.k,
      m0: toWorld((a.x + b.x) / 2, (a.y + b.y) / 2) };
    $('canvas').classList.remove('panning');
  }

  function pinchMove() {
    const g = st.gesture;
    const [a, b] = [...touches.values()];
    const k = Math.max(0.01, Math.min(3, g.k0 * Math.hypot(a.x - b.x, a.y - b.y) / g.d0));
    const r = $('canvas').getBoundingClientRect();
    const mx = (a.x + b.x) / 2 - r.left, my = (a.y + b.y) / 2 - r.top;
    // The world point first under the fingers' midpoint stays under it.
    st.view = { k, x: mx - g.m0.x * k, y: my - g.m0.y * k };
    render();
  }

  function onPointerDown(ev) {
    if (ev.pointerType === 'touch' && st.roomId) {
      touches.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
      if (touches.size === 2) {
        $('canvas').setPointerCapture(ev.pointerId);
        pinchStart();
        return;
      }
    }
    if (!st.roomId || ev.button !== 0) return;
    if (st.past) return; // a past version is read-only
    const svg = $('canvas');
    svg.focus();
    const hit = targetOf(ev);
    const w = toWorld(ev.clientX, ev.clientY);
    if (st.connectFrom) {
      if (hit && hit.type === 'node') addEdge(st.connectFrom, hit.id);
      cancelModes();
      return;
    }
    if (hit && hit.type === 'node' && (ev.ctrlKey || ev.metaKey)) {
      // Ctrl-click adds a node to the selection, or takes it out.
      if (st.selected && st.selected.type === 'node') st.multi.add(st.selected.id);
      if (st.multi.has(hit.id)) st.multi.delete(hit.id); else st.multi.add(hit.id);
      st.selected = null;
    } else if (hit && hit.type === 'node' && !can('editor')) {
      st.selected = hit; // a viewer selects, it does not drag
    } else if (hit && hit.type === 'node') {
      if (!st.multi.has(hit.id)) st.multi.clear();
      st.selected = hit;
      const n = st.nodes.get(hit.id);
      const b = box(n);
      svg.setPointerCapture(ev.pointerId);
      if (ev.shiftKey) {
        st.gesture = { kind: 'connect', id: hit.id };
        const r = $('rubber');
        r.removeAttribute('display');
        r.setAttribute('x1', b.x + b.w / 2); r.setAttribute('y1', b.y + b.h / 2);
        r.setAttribute('x2', w.x); r.setAttribute('y2', w.y);
      } else {
        st.gesture = { kind: 'drag', id: hit.id, dx: w.x - b.x, dy: w.y - b.y, x: b.x, y: b.y, sx: ev.clientX, sy: ev.clientY, moved: false };
      }
    } else if (hit && hit.type === 'edge') {
      st.selected = hit;
      st.multi.clear();
    } else if (ev.shiftKey) {
      // Shift-drag on the background: select the nodes in a box.
      svg.setPointerCapture(ev.pointerId);
      st.gesture = { kind: 'box', x0: w.x, y0: w.y };
      const r = $('selbox');
      r.removeAttribute('display');
      setAttrs(r, { x: w.x, y: w.y, width: 0, height: 0 });
    } else {
      st.selected = null;
      st.multi.clear();
      svg.setPointerCapture(ev.pointerId);
      st.gesture = { kind: 'pan', sx: ev.clientX, sy: ev.clientY, vx: st.view.x, vy: st.view.y };
      svg.classList.add('panning');
    }
    render();
  }

  function onPointerMove(ev) {
    if (touches.has(ev.pointerId)) touches.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
    const g = st.gesture;
    if (!g) return;
    if (g.kind === 'pinch') {
      if (touches.size >= 2) pinchMove();
      return;
    }
    if (g.kind === 'drag') {
      if (!g.moved && Math.hypot(ev.clientX - g.sx, ev.clientY - g.sy) < 3) return;
      const w = toWorld(ev.clientX, ev.clientY);
      g.moved = true;
      g.x = w.x - g.dx;
      g.y = w.y - g.dy;
      render();
    } else if (g.kind === 'pan') {
      st.view.x = g.vx + ev.clientX - g.sx;
      st.view.y = g.vy + ev.clientY - g.sy;
      $('viewport').setAttribute('transform', `translate(${st.view.x},${st.view.y}) scale(${st.view.k})`);
    } else if (g.kind === 'connect') {
      const w = toWorld(ev.clientX, ev.clientY);
      $('rubber').setAttribute('x2', w.x);
      $('rubber').setAttribute('y2', w.y);
    } else if (g.kind === 'box') {
      const w = toWorld(ev.clientX, ev.clientY);
      g.x1 = w.x; g.y1 = w.y;
      setAttrs($('selbox'), { x: Math.min(g.x0, w.x), y: Math.min(g.y0, w.y), width: Math.abs(w.x - g.x0), height: Math.abs(w.y - g.y0) });
    }
  }

  function onPointerUp(ev) {
    touches.delete(ev.pointerId);
    const g = st.gesture;
    if (!g) return;
    if (g.kind === 'pinch') {
      if (touches.size < 2) st.gesture = null;
      return;
    }
    st.gesture = null;
    $('canvas').classList.remove('panning');
    if (g.kind === 'drag' && g.moved && st.nodes.has(g.id)) {
      moveNode(g.id, g.x, g.y);
    } else if (g.kind === 'connect') {
      $('rubber').setAttribute('display', 'none');
      const to = nodeAt(ev.clientX, ev.clientY);
      if (to && to !== g.id) addEdge(g.id, to);
    } else if (g.kind === 'box') {
      $('selbox').setAttribute('display', 'none');
      const x0 = Math.min(g.x0, g.x1 ?? g.x0), x1 = Math.max(g.x0, g.x1 ?? g.x0);
      const y0 = Math.min(g.y0, g.y1 ?? g.y0), y1 = Math.max(g.y0, g.y1 ?? g.y0);
      for (const n of st.nodes.values()) {
        const b = box(n);
        if (b.x >= x0 && b.y >= y0 && b.x + b.w <= x1 && b.y + b.h <= y1) st.multi.add(n.id);
      }
      st.selected = null;
    }
    render();
  }

  function onDoubleClick(ev) {
    if (!st.roomId || st.past) return;
    const hit = targetOf(ev);
    if (hit && hit.type === 'node') {
      st.selected = hit;
      st.focusLabel = hit.id;
      render();
    } else if (!hit) {
      const w = toWorld(ev.clientX, ev.clientY);
      addNode('table', { x: w.x, y: w.y + 20 });
    }
  }

  function onWheel(ev) {
    if (!st.roomId) return;
    ev.preventDefault();
    const r = $('canvas').getBoundingClientRect();
    const px = ev.clientX - r.left, py = ev.clientY - r.top;
    const k = Math.max(0.01, Math.min(3, st.view.k * Math.exp(-ev.deltaY * 0.0015)));
    st.view.x = px - (px - st.view.x) * (k / st.view.k);
    st.view.y = py - (py - st.view.y) * (k / st.view.k);
    st.view.k = k;
    render();
  }

  // ---------- keyboard ----------

  function onKey(ev) {
    if (st.past) return; // a past version is read-only
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (ev.key === 'Escape') {
      if (typing) t.blur();
      cancelModes();
      st.selected = null;
      st.multi.clear();
      render();
      return;
    }
    if (!typing && (ev.ctrlKey || ev.metaKey) && !ev.altKey && st.roomId && can('editor')) {
      const k = ev.key.toLowerCase();
      if (k === 'z' || k === 'y') {
        undoLast(k === 'y' || ev.shiftKey);
        ev.preventDefault();
        return;
      }
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || !st.roomId || $('confirm').open) return;
    const sel = st.selected;
    switch (ev.key) {
      case 'n': addNode('table'); break;
      case 'N': addNode('note'); break;
      case 'c': case 'C': startConnect(); break;
      case 'f': case 'F': fit(); break;
      case 'Delete': case 'Backspace': deleteSelected(); break;
      case 'Enter': case 'F2':
        if (!sel) return;
        if (sel.type === 'node') { st.focusLabel = sel.id; render(); } else { $('edge-label').focus(); $('edge-label').select(); }
        break;
      case 'ArrowLeft': case 'ArrowRight': case 'ArrowUp': case 'ArrowDown': {
        if (!sel || sel.type !== 'node') return;
        const n = st.nodes.get(sel.id);
        const b = box(n);
        const d = ev.shiftKey ? 50 : 10;
        const dx = { ArrowLeft: -d, ArrowRight: d }[ev.key] || 0, dy = { ArrowUp: -d, ArrowDown: d }[ev.key] || 0;
        moveNode(n.id, b.x + dx, b.y + dy);
        break;
      }
      case 'Tab': {
        // Cycle the selection through the nodes.
        const ids = [...st.nodes.keys()];
        if (!ids.length) return;
        const i = sel && sel.type === 'node' ? ids.indexOf(sel.id) : -1;
        st.selected = { type: 'node', id: ids[(i + (ev.shiftKey ? ids.length - 1 : 1)) % ids.length] };
        render();
        break;
      }
      default: return;
    }
    ev.preventDefault();
  }

  // ---------- start ----------

  async function init() {
    const fromURL = new URLSearchParams(location.search).get('name');
    if (fromURL) localStorage.setItem('liveshare.name', fromURL.slice(0, 64));
    $('my-name').value = localStorage.getItem('liveshare.name') || 'guest-' + randomId(4);
    $('my-name').addEventListener('change', () => {
      localStorage.setItem('liveshare.name', myName());
      if (st.roomId && st.es) connect(st.version);
    });
    $('create-room').addEventListener('submit', (ev) => {
      ev.preventDefault();
      createRoom($('new-room-name').value.trim());
    });
    $('rooms-more').addEventListener('click', () => loadRooms(true));
    $('rooms-refresh').addEventListener('click', () => loadRooms(false));
    $('add-table').addEventListener('click', () => addNode('table'));
    $('add-note').addEventListener('click', () => addNode('note'));
    $('connect').addEventListener('click', () => (st.connectFrom ? cancelModes() : startConnect()));
    $('rename').addEventListener('click', () => {
      if (st.selected && st.selected.type === 'node') { st.focusLabel = st.selected.id; render(); } else if (st.selected) $('edge-label').focus();
    });
    $('delete').addEventListener('click', deleteSelected);
    $('fit').addEventListener('click', fit);
    $('undo').addEventListener('click', () => undoLast(false));
    $('redo').addEventListener('click', () => undoLast(true));
    $('snap-now').addEventListener('click', takeSnapshot);
    $('node-form').addEventListener('submit', saveNode);
    $('add-member').addEventListener('submit', addMember);
    $('sign-out').addEventListener('click', signOut);
    $('signin-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = $('token').value;
      $('token').value = '';
      if (token.trim() && (await signIn(token))) {
        await loadSession();
        start();
      }
    });
    $('edge-form').addEventListener('submit', saveEdge);
    const svg = $('canvas');
    svg.addEventListener('pointerdown', onPointerDown);
    svg.addEventListener('pointermove', onPointerMove);
    svg.addEventListener('pointerup', onPointerUp);
    svg.addEventListener('pointercancel', onPointerUp);
    svg.addEventListener('dblclick', onDoubleClick);
    svg.addEventListener('wheel', onWheel, { passive: false });
    document.addEventListener('keydown', onKey);
    window.addEventListener('popstate', () => {
      const id = roomFromURL();
      if (id && id !== st.roomId) openRoom(id, false);
    });
    // Fit the graph once, when a room's first state has arrived.
    const fitOnce = () => {
      if (st.roomId && !st.fitted && st.nodes.size && st.conn === 'live') {
        st.fitted = true;
        fit();
      }
    };
    setInterval(fitOnce, 250);

    // For tests and the curious: what the page believes.
    window.liveshare = {
      clientId,
      pageLoadId,
      state: () => ({
        room: st.roomId, version: st.version, conn: st.conn,
        nodes: [...st.nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
        edges: [...st.edges.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
        users: st.users.map((u) => u.name), recovery: st.recovery, pending: st.pendingMoves.size + outbox.queue.length, fitted: st.fitted,
        mode: st.mode, role: st.role, me: st.me && st.me.subject,
        past: st.past && st.past.version,
      }),
      fit,
      presenceId,
      toWorld,
      post: (ops, what) => postOps(ops, what),
      info: showInfo,
      // For contextmenu.js: the actions on one node.
      nodeAction: (action, id) => {
        if (!st.nodes.has(id)) return;
        st.multi.clear();
        st.selected = { type: 'node', id };
        if (action === 'rename') st.focusLabel = id;
        else if (action === 'connect') startConnect();
        else if (action === 'delete') deleteSelected();
        render();
      },
      // For clipboard.js: the selected nodes, and selecting some.
      selectedNodes,
      select: (ids) => { st.multi = new Set(ids); st.selected = null; render(); },
      // For roomadmin.js and search.js.
      setRoomName: (name) => { st.roomName = name; loadRooms(false); render(); },
      view: () => ({ ...st.view }),
      cancelGesture: () => { st.gesture = null; $('canvas').classList.remove('panning'); render(); },
      centerOn: (x, y) => {
        const r = $('canvas').getBoundingClientRect();
        st.view.x = r.width / 2 - x * st.view.k;
        st.view.y = r.height / 2 - y * st.view.k;
        render();
      },
      focusNode: (id) => {
        const n = st.nodes.get(id);
        if (!n) return false;
        st.selected = { type: 'node', id };
        const b = box(n), r = $('canvas').getBoundingClientRect();
        st.view.x = r.width / 2 - (b.x + b.w / 2) * st.view.k;
        st.view.y = r.height / 2 - (b.y + b.h / 2) * st.view.k;
        render();
        return true;
      },
      banner: (text) => banner(text, '', 20000),
      // zoomTo shows the graph at scale k from its origin (tests use it to
      // bring a known table under the pointer).
      drawTimes: () => drawTimes.slice(),
      zoomTo: (k) => { st.view = { k, x: 40, y: 40 }; render(); return true; },
      // For the history panel (history.js): the API helper, the room, and
      // showing a past version read-only with its diff against now
      // (marks: id → 'added' | 'removed' | 'changed'), or the live graph.
      api,
      describe,
      room: () => ({ id: st.roomId, version: st.version, role: st.role, can }),
      showPast: (version, nodes, edges, marks) => {
        st.past = { version, nodes: new Map(nodes.map((n) => [n.id, n])), edges: new Map(edges.map((e) => [e.id, e])), marks };
        st.selected = null;
        render();
      },
      showLive: () => { st.past = null; render(); },
      activity,
      // For history.js: a restore this page asked for, logged once.
      restoring: (d) => { st.restoring += d; },
      noteReset,
    };

    // A token may also arrive in the fragment of the open page (a link
    // followed in this tab), which does not reload it.
    window.addEventListener('hashchange', async () => {
      const t = tokenFromFragment();
      if (t && (await signIn(t))) {
        await loadSession();
        start();
      }
    });
    const token = tokenFromFragment();
    if (token) await signIn(token); // a new token wins over an old session
    await loadSession();
    start();
  }

  init();
})();
