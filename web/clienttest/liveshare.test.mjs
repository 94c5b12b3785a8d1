// Tests of web/app/liveshare.js against the built LiveShare binary, with
// node's test runner: `LIVESHARE_BINARY=./liveshare node --test web/clienttest/`
// (cmd/api's TestClientModule runs it). Each test starts its own server on
// a free port with its own data directory, and kills it (SIGKILL) where an
// outage is the point.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { Room, Graph, OpQueue, mergePatch } from '../app/liveshare.js';

const binary = process.env.LIVESHARE_BINARY;
if (!binary) throw new Error('set LIVESHARE_BINARY to the built liveshare binary');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** A LiveShare process on a fixed port and data directory, restartable. */
class Server {
  constructor(port, dir) { this.port = port; this.dir = dir; this.base = `http://127.0.0.1:${port}`; this.log = ''; }
  static async start(t) {
    const dir = mkdtempSync(join(tmpdir(), 'liveshare-client-'));
    const s = new Server(await freePort(), dir);
    t.after(() => { s.kill(); rmSync(dir, { recursive: true, force: true }); });
    await s.start();
    return s;
  }
  start() {
    return new Promise((resolve, reject) => {
      this.proc = spawn(binary, [], {
        env: { ...process.env, LIVESHARE_ADDR: `127.0.0.1:${this.port}`, LIVESHARE_DATA_DIR: this.dir, LIVESHARE_SNAPSHOT_INTERVAL: '1h' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const timer = setTimeout(() => reject(new Error('not listening within 30s:\n' + this.log)), 30000);
      this.proc.stderr.on('data', (b) => {
        this.log += b;
        if (this.log.includes('msg=listening')) { clearTimeout(timer); resolve(); }
      });
      this.proc.on('exit', () => { this.proc = null; });
    });
  }
  kill() {
    if (!this.proc) return Promise.resolve();
    const p = this.proc;
    return new Promise((resolve) => { p.on('exit', resolve); p.kill('SIGKILL'); });
  }
  async json(method, path, body) {
    const res = await fetch(this.base + path, { method, headers: { 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
  async createRoom(name) {
    const r = await this.json('POST', '/rooms', { name });
    assert.equal(r.status, 201);
    return r.body.id;
  }
  async graph(room) {
    const r = await this.json('GET', `/rooms/${room}/graph`);
    assert.equal(r.status, 200);
    return r.body;
  }
}

/** Storage in memory, shaped like window.localStorage. */
class MemoryStorage {
  constructor() { this.m = new Map(); }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { this.m.set(k, String(v)); }
  removeItem(k) { this.m.delete(k); }
}

function client(t, srv, room, opts = {}) {
  const c = new Room({ base: srv.base, room, storage: new MemoryStorage(), retryMs: 50, maxRetryMs: 200, ...opts });
  c.errors = [];
  c.addEventListener('error', (ev) => c.errors.push(ev.detail.error));
  t.after(() => c.stop());
  c.start();
  return c;
}

async function until(what, ok, ms = 15000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until every client holds exactly GET /graph, with nothing pending. */
async function converge(srv, room, ...clients) {
  let g;
  await until('the clients to hold GET /graph', async () => {
    g = await srv.graph(room);
    return clients.every((c) => c.status === 'live' && c.pending === 0 && c.version === g.version &&
      isDeepStrictEqual(c.graph.toJSON(), { nodes: g.nodes, edges: g.edges }));
  });
  return g;
}

const table = (id, x = 0, y = 0) => ({ op: 'add_node', node: { id, kind: 'table', label: id, x, y, data: { columns: [{ name: 'id', type: 'uuid' }] } } });

test('Graph applies ops as the server does, and merge patches follow RFC 7396', () => {
  const g = new Graph();
  g.apply(table('users'));
  g.apply(table('orders'));
  g.apply({ op: 'add_edge', edge: { id: 'fk', source: 'orders', target: 'users' } });
  g.apply({ op: 'update_node', id: 'users', patch: { label: 'people', data: { columns: null, note: 'x' } } });
  assert.deepEqual(g.nodes.get('users').data, { note: 'x' });
  assert.equal(g.nodes.get('users').label, 'people');
  g.apply({ op: 'remove_node', id: 'users' });
  assert.equal(g.edges.size, 0, 'removing a node removes its edges');
  assert.throws(() => g.apply(table('orders')), /exists/);
  assert.throws(() => g.apply({ op: 'add_edge', edge: { id: 'e', source: 'orders', target: 'ghost' } }), /missing end/);
  assert.throws(() => g.apply({ op: 'frobnicate' }), /unknown op/);
  assert.deepEqual(mergePatch({ a: 1, b: { c: 2 } }, { b: { c: null, d: [1] } }), { a: 1, b: { d: [1] } });
});

test('OpQueue keeps its batches in storage, and ignores what it cannot read', () => {
  const s = new MemoryStorage();
  const q = new OpQueue(s, 'k');
  const b = q.push([table('a')]);
  q.push([table('b')]);
  const again = new OpQueue(s, 'k');
  assert.deepEqual(again.batches.map((x) => x.ops[0].node.id), ['a', 'b']);
  again.remove(b.key);
  assert.equal(new OpQueue(s, 'k').length, 1);
  s.setItem('bad', '{not json');
  assert.equal(new OpQueue(s, 'bad').length, 0);
  s.setItem('odd', '[1, {"key": 5}, {"key": "x", "ops": []}]');
  assert.equal(new OpQueue(s, 'odd').length, 1);
});

test('two clients converge on GET /graph; a client that stops resumes from its last id', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('converge');
  const a = client(t, srv, room, { name: 'alice' });
  const b = client(t, srv, room, { name: 'bob' });
  await until('both live', () => a.status === 'live' && b.status === 'live');
  const ack = await a.send([table('users'), table('orders', 300)]);
  assert.deepEqual(ack, { version: 2, applied: 2 });
  await b.send([{ op: 'add_edge', edge: { id: 'orders_user', source: 'orders', target: 'users', label: 'user_id' } }]);
  await converge(srv, room, a, b);

  // B goes away; ops happen; B comes back with Last-Event-ID and gets
  // exactly those, no snapshot, no duplicate.
  b.stop();
  const changes = [];
  b.addEventListener('change', (ev) => changes.push(ev.detail));
  await a.send([{ op: 'update_node', id: 'users', patch: { label: 'people' } }]);
  await a.send([table('payments', 600)]);
  b.abort = null;
  b.start();
  const g = await converge(srv, room, a, b);
  assert.equal(g.version, 5);
  assert.ok(changes.every((c) => !c.reset), 'resumed without a snapshot');
  assert.deepEqual(changes.flatMap((c) => c.entries || []).map((e) => e.seq), [4, 5]);
  assert.equal(b.graph.nodes.get('users').label, 'people');
  assert.deepEqual([...a.errors, ...b.errors].filter((e) => !(e instanceof TypeError)), []);
});

test('edits made while the server is down are queued and land exactly once, in order, when it is back', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('offline');
  const storage = new MemoryStorage();
  const a = client(t, srv, room, { storage });
  const b = client(t, srv, room);
  await a.send([table('users')]);
  await converge(srv, room, a, b);

  await srv.kill();
  await until('A offline', () => a.status === 'offline' || a.status === 'connecting');
  const sent = [
    a.send([table('orders', 300)]),
    a.send([{ op: 'update_node', id: 'orders', patch: { label: 'orders (offline)' } }]),
    a.send([{ op: 'add_edge', edge: { id: 'orders_user', source: 'orders', target: 'users' } }]),
  ];
  assert.equal(a.pending, 3, 'queued while offline');
  assert.ok(storage.getItem(`liveshare:queue:${room}`).includes('orders (offline)'), 'the queue is in storage');
  assert.equal(a.view().nodes.get('orders').label, 'orders (offline)', 'the view shows the pending edits');
  assert.equal(a.graph.nodes.has('orders'), false, 'the acknowledged graph does not');

  await srv.start();
  const acks = await Promise.all(sent);
  assert.deepEqual(acks.map((x) => x.version), [2, 3, 4], 'posted in order');
  const g = await converge(srv, room, a, b);
  assert.equal(g.version, 4, 'each op applied exactly once');
  assert.equal(storage.getItem(`liveshare:queue:${room}`), null, 'the stored queue is emptied');
});

test('a queue stored by a client that went away is posted by the next one, and a lost answer is retried with its key', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('reload');
  const storage = new MemoryStorage();
  // A page that queued an edit and was closed before it could post it.
  const q = new OpQueue(storage, `liveshare:queue:${room}`);
  q.push([table('from_last_visit')]);
  // The next page's first post is committed, but its answer is lost.
  let dropped = 0;
  const lossy = async (url, init) => {
    const res = await fetch(url, init);
    if (init && init.method === 'POST' && dropped === 0) {
      dropped++;
      throw new TypeError('the answer was lost');
    }
    return res;
  };
  const a = client(t, srv, room, { storage, fetch: lossy });
  const g = await converge(srv, room, a);
  assert.equal(dropped, 1);
  assert.equal(g.version, 1, 'the retry with the same Idempotency-Key applied nothing twice');
  assert.deepEqual(g.nodes.map((n) => n.id), ['from_last_visit']);
});

test('a refused batch is reported and dropped; the batches after it still land', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('refused');
  const a = client(t, srv, room);
  await until('live', () => a.status === 'live');
  const refused = [];
  a.addEventListener('refused', (ev) => refused.push(ev.detail));
  const bad = a.send([table('ok_in_a_bad_batch'), { op: 'add_edge', edge: { id: 'e', source: 'nope', target: 'nope2' } }]);
  const badId = a.send([{ op: 'add_node', node: { id: 'has space', kind: 'table' } }]);
  const good = a.send([table('users')]);
  await assert.rejects(bad, (err) => err.status === 422 && err.problem.code === 'invalid_op' && err.problem.op_index === 1);
  await assert.rejects(badId, (err) => err.status === 422 && err.problem.code === 'invalid_op');
  assert.deepEqual(await good, { version: 1, applied: 1 });
  assert.equal(refused.length, 2);
  const g = await converge(srv, room, a);
  assert.deepEqual(g.nodes.map((n) => n.id), ['users'], 'nothing of the refused batches');
});

test('presence: names, each client finds itself, and others see its cursor and selection', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('presence');
  const a = client(t, srv, room, { name: 'alice', presenceMs: 10 });
  const b = client(t, srv, room, { name: 'bob' });
  await until('both see both', () => [a, b].every((c) => c.users.map((u) => u.name).sort().join() === 'alice,bob'));
  assert.equal(a.me().name, 'alice');
  assert.equal(b.me().name, 'bob');
  a.setPresence({ cursor: { x: 10, y: 20 } });
  a.setPresence({ selection: ['users'] }); // gathered into one PATCH
  await until("alice's state at bob", () => {
    const al = b.users.find((u) => u.name === 'alice');
    return al && al.state && al.state.cursor && al.state.cursor.x === 10 && al.state.selection && al.state.selection[0] === 'users';
  });
  a.setPresence({ selection: null });
  await until("alice's selection cleared", () => {
    const al = b.users.find((u) => u.name === 'alice');
    return al && al.state && !al.state.selection && al.state.cursor.y === 20;
  });
  a.stop();
  await until('alice gone at bob', () => b.users.every((u) => u.name !== 'alice'));
});

test('a deleted room ends the client with a deleted event; an unknown one too', async (t) => {
  const srv = await Server.start(t);
  const room = await srv.createRoom('doomed');
  const a = client(t, srv, room);
  await until('live', () => a.status === 'live');
  let deleted = 0;
  a.addEventListener('deleted', () => deleted++);
  assert.equal((await srv.json('DELETE', `/rooms/${room}`)).status, 204);
  await until('deleted', () => deleted === 1 && a.status === 'closed');
  const ghost = client(t, srv, '00000000-0000-4000-8000-000000000000');
  let ghostGone = false;
  ghost.addEventListener('deleted', () => { ghostGone = true; });
  await until('the unknown room refused', () => ghostGone || ghost.status === 'closed');
});
