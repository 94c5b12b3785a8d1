// clipboard.js: copy, paste and duplicate of the selected nodes with the
// edges between them. Pasted elements get new ids and land a little
// offset; one paste is one batch (all or none) and one undo. The copy is
// kept in the page, and written to the system clipboard as a graph file
// (the JSON exchange.js imports) when the browser allows it.
const OFFSET = 40;

function newId(id) {
  const b = new Uint8Array(4);
  crypto.getRandomValues(b);
  const tail = [...b].map((x) => x.toString(36).padStart(2, '0')).join('').slice(0, 6);
  return `${id.slice(0, 120)}_${tail}`;
}

/**
 * The ops that paste a copied graph with new ids, offset by (dx, dy), and
 * the new node ids.
 * @param {{nodes: any[], edges: any[]}} copied @param {number} dx @param {number} dy
 */
export function pasteOps(copied, dx, dy) {
  const ids = new Map();
  const ops = [];
  for (const n of copied.nodes) {
    const id = newId(n.id);
    ids.set(n.id, id);
    ops.push({ op: 'add_node', node: { ...structuredClone(n), id, x: n.x + dx, y: n.y + dy } });
  }
  for (const e of copied.edges) {
    if (!ids.has(e.source) || !ids.has(e.target)) continue;
    ops.push({ op: 'add_edge', edge: { ...structuredClone(e), id: newId(e.id), source: ids.get(e.source), target: ids.get(e.target) } });
  }
  return { ops, nodes: [...ids.values()] };
}

function start() {
  const ls = window.liveshare;
  if (!ls) return;
  let copied = null, pastes = 0;

  function copy() {
    const ids = new Set(ls.selectedNodes());
    if (!ids.size) return false;
    const s = ls.state();
    copied = { nodes: s.nodes.filter((n) => ids.has(n.id)), edges: s.edges.filter((e) => ids.has(e.source) && ids.has(e.target)) };
    pastes = 0;
    if (navigator.clipboard) navigator.clipboard.writeText(JSON.stringify(copied)).catch(() => {});
    ls.info(`Copied ${copied.nodes.length} node${copied.nodes.length === 1 ? '' : 's'}.`);
    return true;
  }

  async function paste() {
    if (!copied) return;
    pastes++;
    const { ops, nodes } = pasteOps(copied, OFFSET * pastes, OFFSET * pastes);
    const res = await ls.post(ops, 'Could not paste');
    if (res) ls.select(nodes);
  }

  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (typing || !(ev.ctrlKey || ev.metaKey) || ev.altKey || !ls.room().id) return;
    const k = ev.key.toLowerCase();
    if (k === 'c') {
      if (copy()) ev.preventDefault();
    } else if (k === 'v' && ls.room().can('editor')) {
      if (copied) { ev.preventDefault(); paste(); }
    } else if (k === 'd' && ls.room().can('editor')) {
      ev.preventDefault();
      if (copy()) paste();
    }
  });
}

start();
