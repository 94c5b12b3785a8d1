// contextmenu.js: the actions on a node (rename, connect, duplicate,
// delete) in a small menu, opened by a long press of a finger (no keyboard
// on a phone) or by the right mouse button.
const LONG_PRESS_MS = 550;
const SLOP_PX = 8;

function start() {
  const ls = window.liveshare;
  const svg = document.getElementById('canvas');
  const menu = document.getElementById('node-menu');
  if (!ls || !svg || !menu) return;
  let press = null; // {id, x, y, timer}
  let target = null;

  function open(id, clientX, clientY) {
    if (!ls.room().can('editor')) return;
    target = id;
    const wrap = menu.parentElement.getBoundingClientRect();
    menu.hidden = false;
    const w = menu.offsetWidth, h = menu.offsetHeight;
    menu.style.left = `${Math.max(4, Math.min(clientX - wrap.left, wrap.width - w - 4))}px`;
    menu.style.top = `${Math.max(4, Math.min(clientY - wrap.top, wrap.height - h - 4))}px`;
    menu.querySelector('button').focus();
  }
  function close() { menu.hidden = true; target = null; }

  const nodeOf = (ev) => {
    const g = ev.target instanceof Element && ev.target.closest('g.node');
    return g ? g.dataset.id : null;
  };

  svg.addEventListener('pointerdown', (ev) => {
    close();
    const id = nodeOf(ev);
    if (ev.pointerType !== 'touch' || !id) return;
    const p = { id, x: ev.clientX, y: ev.clientY, pointer: ev.pointerId };
    p.timer = setTimeout(() => {
      if (press !== p) return;
      press = null;
      ls.cancelGesture(); // the finger opened a menu; it does not drag
      open(id, p.x, p.y);
    }, LONG_PRESS_MS);
    press = p;
  });
  svg.addEventListener('pointermove', (ev) => {
    if (press && ev.pointerId === press.pointer && Math.hypot(ev.clientX - press.x, ev.clientY - press.y) > SLOP_PX) {
      clearTimeout(press.timer);
      press = null;
    }
  });
  for (const type of ['pointerup', 'pointercancel']) {
    svg.addEventListener(type, () => { if (press) { clearTimeout(press.timer); press = null; } });
  }
  svg.addEventListener('contextmenu', (ev) => {
    const id = nodeOf(ev);
    if (!id) return;
    ev.preventDefault();
    open(id, ev.clientX, ev.clientY);
  });
  menu.addEventListener('click', (ev) => {
    const b = ev.target instanceof Element && ev.target.closest('button[data-action]');
    if (!b || !target) return;
    const id = target;
    close();
    if (b.dataset.action === 'duplicate') {
      ls.select([id]);
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'd', ctrlKey: true }));
    } else {
      ls.nodeAction(b.dataset.action, id);
    }
  });
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') close(); });
  document.addEventListener('pointerdown', (ev) => { if (!menu.contains(ev.target) && ev.target !== svg && !svg.contains(ev.target)) close(); });
}

start();
