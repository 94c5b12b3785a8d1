// undo.js: undo and redo of this page's own changes, as new ops. Each
// change is kept with its inverse, computed from the graph just before it;
// undoing posts the inverse, taking what others changed since into
// account: a patch puts back only the fields this change set, and only
// where they still hold what this change wrote; what others removed since
// is left removed.

/**
 * @typedef {import('./liveshare.js').Op} Op
 * @typedef {{nodes: Map<string, any>, edges: Map<string, any>}} GraphLike
 */

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The merge patch that turns after back into before for the keys patch
 * touched (RFC 7396: null removes).
 * @param {any} before @param {any} patch @returns {any}
 */
export function inversePatch(before, patch) {
  const inv = {};
  for (const [k, v] of Object.entries(patch)) {
    const had = isObj(before) && Object.prototype.hasOwnProperty.call(before, k);
    if (isObj(v) && had && isObj(before[k])) inv[k] = inversePatch(before[k], v);
    else inv[k] = had ? structuredClone(before[k]) : null;
  }
  return inv;
}

/**
 * The ops that undo ops, applied to g (the graph before them), in order.
 * It returns null when ops cannot be inverted (a reset).
 * @param {Op[]} ops @param {GraphLike} g @returns {Op[]|null}
 */
export function invert(ops, g) {
  // Walk a scratch copy forward so that each op's inverse sees the graph
  // just before it.
  const nodes = new Map(g.nodes), edges = new Map(g.edges);
  const inv = [];
  for (const op of ops) {
    switch (op.op) {
      case 'add_node':
        nodes.set(op.node.id, op.node);
        inv.push({ op: 'remove_node', id: op.node.id });
        break;
      case 'add_edge':
        edges.set(op.edge.id, op.edge);
        inv.push({ op: 'remove_edge', id: op.edge.id });
        break;
      case 'update_node': case 'update_edge': {
        const m = op.op === 'update_node' ? nodes : edges;
        const before = m.get(op.id);
        if (!before) return null;
        inv.push({ op: op.op, id: op.id, patch: inversePatch(before, op.patch), expect: op.patch });
        break;
      }
      case 'remove_edge': {
        const e = edges.get(op.id);
        if (!e) return null;
        edges.delete(op.id);
        inv.push({ op: 'add_edge', edge: e });
        break;
      }
      case 'remove_node': {
        const n = nodes.get(op.id);
        if (!n) return null;
        nodes.delete(op.id);
        const back = [{ op: 'add_node', node: n }];
        for (const [id, e] of edges) {
          if (e.source === op.id || e.target === op.id) {
            edges.delete(id);
            back.push({ op: 'add_edge', edge: e });
          }
        }
        inv.push(...back.reverse()); // reversed below with the rest
        break;
      }
      default:
        return null;
    }
  }
  return inv.reverse();
}

// holds reports whether value still says what patch wrote.
function holds(value, patch) {
  for (const [k, v] of Object.entries(patch)) {
    const cur = isObj(value) ? value[k] : undefined;
    if (v === null) { if (cur !== undefined) return false; continue; }
    if (isObj(v)) { if (!holds(cur, v)) return false; continue; }
    if (JSON.stringify(cur) !== JSON.stringify(v)) return false;
  }
  return true;
}

/**
 * The inverse ops that still apply to g now: updates of what still holds
 * this page's values, re-adds of what is still gone, removals of what is
 * still there. What others changed since is theirs, and stays.
 * @param {Op[]} inv @param {GraphLike} g @returns {Op[]}
 */
export function stillApplies(inv, g) {
  const nodes = new Set(g.nodes.keys()), edges = new Set(g.edges.keys());
  const out = [];
  for (const op of inv) {
    switch (op.op) {
      case 'remove_node':
        if (nodes.delete(op.id)) out.push(op);
        break;
      case 'remove_edge':
        if (edges.delete(op.id)) out.push(op);
        break;
      case 'add_node':
        if (!nodes.has(op.node.id) && !edges.has(op.node.id)) { nodes.add(op.node.id); out.push(op); }
        break;
      case 'add_edge':
        if (!edges.has(op.edge.id) && !nodes.has(op.edge.id) && nodes.has(op.edge.source) && nodes.has(op.edge.target)) {
          edges.add(op.edge.id); out.push(op);
        }
        break;
      case 'update_node': case 'update_edge': {
        const cur = (op.op === 'update_node' ? g.nodes : g.edges).get(op.id);
        if (!cur || !(op.op === 'update_node' ? nodes : edges).has(op.id)) break;
        if (op.expect && !holds(cur, op.expect)) break; // changed by others since
        out.push({ op: op.op, id: op.id, patch: op.patch });
        break;
      }
    }
  }
  return out;
}

/** The undo and redo stacks of one room. */
export class UndoStack {
  constructor(limit = 100) {
    this.limit = limit;
    /** @type {Op[][]} */ this.undos = [];
    /** @type {Op[][]} */ this.redos = [];
  }

  /** Records a change made by the user: its inverse. @param {Op[]} inv */
  record(inv) {
    if (!inv || inv.length === 0) return;
    this.undos.push(inv);
    if (this.undos.length > this.limit) this.undos.shift();
    this.redos = [];
  }

  clear() { this.undos = []; this.redos = []; }
}
