// cursors.js: others' pointers on the canvas, and this tab's pointer sent
// to them. The pointer's position in graph coordinates goes to
// PATCH /rooms/{room}/presence/{presence_id} (at most every 50 ms, only
// while the stream is live: presence is ephemeral, nothing is queued);
// presence events bring every user's state back, and each other user with
// a cursor is drawn as an arrow with its name, in a colour of its own.
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

  svg.addEventListener('pointermove', (ev) => {
    if (!ls.room().id) return;
    const w = ls.toWorld(ev.clientX, ev.clientY);
    pending = { cursor: { x: Math.round(w.x), y: Math.round(w.y) } };
    if (!timer) timer = setTimeout(send, SEND_EVERY_MS);
  });

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
  });
}

start();
