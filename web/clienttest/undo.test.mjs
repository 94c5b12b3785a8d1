// Unit tests of web/app/undo.js (no server needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invert, inversePatch, stillApplies } from '../app/undo.js';
import { Graph } from '../app/liveshare.js';

const table = (id, x = 0) => ({ id, kind: 'table', label: id, x, y: 0, data: { columns: [{ name: 'id', type: 'uuid' }] } });

function apply(g, ops) { for (const op of ops) g.apply(op); return g; }

test('inverse of each op kind puts the graph back', () => {
  const base = Graph.from({ nodes: [table('users'), table('orders', 300)], edges: [{ id: 'fk', kind: 'relation', source: 'orders', target: 'users', label: 'user_id', data: {} }] });
  for (const ops of [
    [{ op: 'add_node', node: table('payments') }],
    [{ op: 'update_node', id: 'users', patch: { label: 'people', x: 50, data: { note: 'n', columns: null } } }],
    [{ op: 'remove_node', id: 'users' }],
    [{ op: 'remove_edge', id: 'fk' }],
    [{ op: 'add_node', node: table('a') }, { op: 'add_edge', edge: { id: 'a_fk', kind: 'relation', source: 'a', target: 'users', label: '', data: {} } }],
    [{ op: 'update_edge', id: 'fk', patch: { label: 'owner_id' } }],
  ]) {
    const g = base.clone();
    const inv = invert(ops, g);
    apply(g, ops);
    apply(g, stillApplies(inv, g));
    assert.deepEqual(g.toJSON(), base.toJSON(), JSON.stringify(ops));
  }
});

test('an undo leaves what others changed since', () => {
  const g = Graph.from({ nodes: [table('users')], edges: [] });
  const mine = [{ op: 'update_node', id: 'users', patch: { label: 'people', x: 40 } }];
  const inv = invert(mine, g);
  apply(g, mine);
  // Someone else renames it again; x is still mine.
  g.apply({ op: 'update_node', id: 'users', patch: { label: 'customers' } });
  const undo = stillApplies(inv, g);
  assert.deepEqual(undo, []);
  // Split per field, x alone is undone: patches are inverted as a whole,
  // so a change made of several fields stays when any was overwritten.
  const g2 = Graph.from({ nodes: [table('users')], edges: [] });
  const move = [{ op: 'update_node', id: 'users', patch: { x: 40 } }];
  const inv2 = invert(move, g2);
  apply(g2, move);
  g2.apply({ op: 'update_node', id: 'users', patch: { label: 'customers' } });
  apply(g2, stillApplies(inv2, g2));
  assert.equal(g2.nodes.get('users').x, 0);
  assert.equal(g2.nodes.get('users').label, 'customers');
  // Removed by others since: the undo of a rename does nothing.
  const g3 = Graph.from({ nodes: [table('users')], edges: [] });
  const inv3 = invert([{ op: 'update_node', id: 'users', patch: { label: 'x' } }], g3);
  assert.deepEqual(stillApplies(inv3, new Graph()), []);
});

test('inversePatch removes what was absent and keeps nested fields apart', () => {
  assert.deepEqual(inversePatch({ a: 1, d: { x: 1, y: 2 } }, { a: 2, b: 3, d: { x: 5 } }), { a: 1, b: null, d: { x: 1 } });
  assert.equal(invert([{ op: 'reset', state: { nodes: [], edges: [] } }], new Graph()), null);
  assert.equal(invert([{ op: 'remove_node', id: 'ghost' }], new Graph()), null);
});
