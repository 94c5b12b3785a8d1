// exchange.js: a room's graph out of the page and into it: export as JSON
// (a graph file: {"nodes":[…],"edges":[…]}, what GET /graph lists), as SVG
// (the canvas with its style sheet, standalone) and as PNG; import of a
// graph file into the open room, as add ops (all of a batch or none: ids
// that exist already are refused, and the refusal is shown).
const SVGNS = 'http://www.w3.org/2000/svg';
const MAX_OPS = 1000; // per request (DESIGN.md section 4)
const NODE_FIELDS = ['id', 'kind', 'label', 'x', 'y', 'data'];
const EDGE_FIELDS = ['id', 'kind', 'source', 'target', 'label', 'data'];

const pick = (o, fields) => Object.fromEntries(fields.filter((f) => o[f] !== undefined).map((f) => [f, o[f]]));

/** The open room's graph as a graph file. @returns {Promise<string>} */
export async function exportJSON() {
  const ls = window.liveshare;
  const g = await ls.api('GET', `/rooms/${encodeURIComponent(ls.room().id)}/graph`);
  return JSON.stringify({ nodes: g.nodes, edges: g.edges }, null, 2);
}

/**
 * Checks a graph file and returns the ops that add it, nodes first.
 * @param {string} text @returns {import('./liveshare.js').Op[]}
 */
export function importOps(text) {
  let g;
  try { g = JSON.parse(text); } catch (e) { throw new Error(`not JSON: ${e.message}`); }
  if (!g || typeof g !== 'object' || !Array.isArray(g.nodes) || !Array.isArray(g.edges ?? [])) {
    throw new Error('a graph file is an object with a "nodes" array and an "edges" array');
  }
  const ops = [];
  g.nodes.forEach((n, i) => {
    if (!n || typeof n !== 'object' || typeof n.id !== 'string') throw new Error(`nodes[${i}] has no string id`);
    ops.push({ op: 'add_node', node: pick(n, NODE_FIELDS) });
  });
  (g.edges || []).forEach((e, i) => {
    if (!e || typeof e !== 'object' || typeof e.id !== 'string') throw new Error(`edges[${i}] has no string id`);
    ops.push({ op: 'add_edge', edge: pick(e, EDGE_FIELDS) });
  });
  if (!ops.length) throw new Error('the graph file is empty');
  return ops;
}

/** Posts a graph file into the open room. @param {string} text */
export async function importJSON(text) {
  const ops = importOps(text);
  let last = null;
  for (let i = 0; i < ops.length; i += MAX_OPS) {
    last = await window.liveshare.post(ops.slice(i, i + MAX_OPS), 'Could not import the graph');
    if (!last) return null; // refused, and said so
  }
  return last;
}

/** The canvas as a standalone SVG document. @returns {Promise<string>} */
export async function exportSVG() {
  const svg = document.getElementById('canvas');
  const vp = document.getElementById('viewport');
  const box = document.getElementById('nodes').getBBox();
  const e = document.getElementById('edges').getBBox();
  const x0 = Math.min(box.x, e.width ? e.x : box.x) - 20, y0 = Math.min(box.y, e.height ? e.y : box.y) - 20;
  const x1 = Math.max(box.x + box.width, e.x + e.width) + 20, y1 = Math.max(box.y + box.height, e.y + e.height) + 20;
  const out = document.createElementNS(SVGNS, 'svg');
  out.setAttribute('xmlns', SVGNS);
  out.setAttribute('viewBox', `${x0} ${y0} ${x1 - x0} ${y1 - y0}`);
  out.setAttribute('width', Math.ceil(x1 - x0));
  out.setAttribute('height', Math.ceil(y1 - y0));
  const style = document.createElementNS(SVGNS, 'style');
  style.textContent = await (await fetch('/app/app.css')).text();
  out.append(style, svg.querySelector('defs').cloneNode(true));
  const bg = document.createElementNS(SVGNS, 'rect');
  setAll(bg, { x: x0, y: y0, width: x1 - x0, height: y1 - y0, fill: getComputedStyle(svg).backgroundColor });
  out.append(bg);
  for (const id of ['edges', 'nodes']) out.append(vp.querySelector('#' + id).cloneNode(true));
  for (const n of out.querySelectorAll('.selected, .flash, .pending')) n.classList.remove('selected', 'flash', 'pending');
  return new XMLSerializer().serializeToString(out);
}

/** The canvas as a PNG, at scale (2: sharp on most screens). @returns {Promise<string>} a data: URL */
export async function exportPNG(scale = 2) {
  const text = await exportSVG();
  const img = new Image();
  img.src = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(text)));
  await img.decode();
  const c = document.createElement('canvas');
  c.width = Math.ceil(img.width * scale);
  c.height = Math.ceil(img.height * scale);
  const ctx = c.getContext('2d');
  ctx.scale(scale, scale);
  ctx.drawImage(img, 0, 0);
  return c.toDataURL('image/png');
}

function setAll(e, attrs) { for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); }

function download(name, href) {
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

function fileName(ext) {
  const name = (document.getElementById('room-title').textContent || 'graph').replace(/[^\p{L}\p{N}_-]+/gu, '_').slice(0, 60);
  return `${name || 'graph'}.${ext}`;
}

function start() {
  const ls = window.liveshare;
  if (!ls) return;
  const fail = (what) => (e) => ls.banner(`${what}: ${ls.describe(e)}`);
  const blobURL = (text, type) => URL.createObjectURL(new Blob([text], { type }));
  document.getElementById('export-json').addEventListener('click', () =>
    exportJSON().then((t) => download(fileName('json'), blobURL(t, 'application/json')), fail('Could not export')));
  document.getElementById('export-svg').addEventListener('click', () =>
    exportSVG().then((t) => download(fileName('svg'), blobURL(t, 'image/svg+xml')), fail('Could not export')));
  document.getElementById('export-png').addEventListener('click', () =>
    exportPNG().then((u) => download(fileName('png'), u), fail('Could not export')));
  const file = document.getElementById('import-file');
  document.getElementById('import-json').addEventListener('click', () => file.click());
  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    file.value = '';
    if (!f) return;
    try {
      await importJSON(await f.text());
    } catch (e) {
      fail('Could not import')(e);
    }
  });
  Object.assign(ls, { exportJSON, exportSVG, exportPNG, importJSON });
}

start();
