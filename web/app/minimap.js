// minimap.js: the whole graph small, in a corner, with the part in view
// outlined; a click or drag on it brings that place to the middle.
const SVGNS = 'http://www.w3.org/2000/svg';
const W = 180, H = 120, PAD = 40;

function start() {
  const ls = window.liveshare;
  const svg = document.getElementById('minimap');
  const canvas = document.getElementById('canvas');
  if (!ls || !svg || !canvas) return;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const shapes = document.createElementNS(SVGNS, 'path');
  shapes.setAttribute('class', 'mm-nodes');
  const frame = document.createElementNS(SVGNS, 'rect');
  frame.setAttribute('class', 'mm-view');
  svg.append(shapes, frame);
  let fit = null; // world → minimap: {x0, y0, s}

  document.addEventListener('liveshare:drawn', (ev) => {
    const boxes = [...ev.detail.boxes.values()];
    svg.toggleAttribute('hidden', boxes.length === 0); // (an SVG element has no .hidden)
    if (!boxes.length) return;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const b of boxes) {
      x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y);
      x1 = Math.max(x1, b.x + b.w); y1 = Math.max(y1, b.y + b.h);
    }
    x0 -= PAD; y0 -= PAD; x1 += PAD; y1 += PAD;
    const s = Math.min(W / (x1 - x0), H / (y1 - y0));
    fit = { x0, y0, s };
    // One path for every node: cheap to redraw on every frame of a drag.
    let d = '';
    for (const b of boxes) {
      d += `M${((b.x - x0) * s).toFixed(1)},${((b.y - y0) * s).toFixed(1)}h${Math.max(1, b.w * s).toFixed(1)}v${Math.max(1, b.h * s).toFixed(1)}h${(-Math.max(1, b.w * s)).toFixed(1)}z`;
    }
    shapes.setAttribute('d', d);
    const v = ls.view(), r = canvas.getBoundingClientRect();
    const vx = -v.x / v.k, vy = -v.y / v.k;
    frame.setAttribute('x', (vx - x0) * s);
    frame.setAttribute('y', (vy - y0) * s);
    frame.setAttribute('width', (r.width / v.k) * s);
    frame.setAttribute('height', (r.height / v.k) * s);
  });

  const go = (ev) => {
    if (!fit) return;
    const r = svg.getBoundingClientRect();
    const mx = (ev.clientX - r.left) * (W / r.width), my = (ev.clientY - r.top) * (H / r.height);
    ls.centerOn(fit.x0 + mx / fit.s, fit.y0 + my / fit.s);
  };
  svg.addEventListener('pointerdown', (ev) => { svg.setPointerCapture(ev.pointerId); go(ev); });
  svg.addEventListener('pointermove', (ev) => { if (ev.buttons & 1) go(ev); });
}

start();
