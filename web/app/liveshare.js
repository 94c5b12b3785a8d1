// liveshare.js: a small client for one LiveShare room, for browsers and for
// Node 18+ alike. It follows the room's event stream (resuming from its last
// id, recovering from snapshot and reset events), keeps the room's graph,
// posts ops with an Idempotency-Key through a queue that survives going
// offline (and, with a Storage, reloading the page), and sends the caller's
// presence state (cursor, selection, status).
//
// Load it from the service itself:
//
//   import { Room } from '/app/liveshare.js';
//   const room = new Room({ room: id, name: 'alice' });
//   room.addEventListener('change', () => draw(room.view()));
//   room.start();
//   await room.send([{ op: 'add_node', node: { id: 'users', kind: 'table' } }]);
//
// The stream is read over fetch (not EventSource), so that the same code
// runs in Node, sends Last-Event-ID itself, and sees the HTTP status of a
// refused stream. See README.md, "The client module".

/**
 * @typedef {{id: string, kind: string, label: string, x: number, y: number, data: Object<string, any>}} Node
 * @typedef {{id: string, kind: string, source: string, target: string, label: string, data: Object<string, any>}} Edge
 * @typedef {{op: string, [k: string]: any}} Op
 * @typedef {{nodes: Node[], edges: Edge[]}} State
 * @typedef {{x: number, y: number}} Cursor
 * @typedef {{cursor?: Cursor|null, selection?: string[]|null, status?: string|null}} PresenceState
 * @typedef {{id: string, name: string, connected_at: string, presence_id?: string, state?: PresenceState}} User
 * @typedef {{key: string, ops: Op[], at: number}} Batch
 * @typedef {{type?: string, title?: string, status?: number, detail?: string, code?: string, op_index?: number}} Problem
 * @typedef {'idle'|'connecting'|'live'|'offline'|'closed'} Status
 * @typedef {{getItem(k: string): string|null, setItem(k: string, v: string): void, removeItem(k: string): void}} StorageLike
 */

/** An HTTP refusal, with its problem+json body. */
export class ProblemError extends Error {
  /** @param {number} status @param {Problem} problem */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Applies an RFC 7396 JSON Merge Patch to target, returning the result.
 * @param {any} target @param {any} patch @returns {any}
 */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The graph of a room: nodes and edges by id. */
export class Graph {
  constructor() {
    /** @type {Map<string, Node>} */ this.nodes = new Map();
    /** @type {Map<string, Edge>} */ this.edges = new Map();
  }

  /** @param {State} state @returns {Graph} */
  static from(state) {
    const g = new Graph();
    for (const n of state.nodes || []) g.nodes.set(n.id, n);
    for (const e of state.edges || []) g.edges.set(e.id, e);
    return g;
  }

  /** @returns {Graph} a copy sharing the (immutable) elements */
  clone() {
    const g = new Graph();
    g.nodes = new Map(this.nodes);
    g.edges = new Map(this.edges);
    return g;
  }

  /** @returns {State} nodes and edges sorted by id, as GET /graph lists them */
  toJSON() {
    const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    return { nodes: [...this.nodes.values()].sort(byId), edges: [...this.edges.values()].sort(byId) };
  }

  /**
   * Applies one op as the server does (DESIGN.md section 3). Elements are
   * replaced, never changed in place, so a renderer can compare them by
   * identity. It throws on an op that does not apply.
   * @param {Op} op
   */
  apply(op) {
    switch (op.op) {
      case 'add_node': {
        if (this.nodes.has(op.node.id) || this.edges.has(op.node.id)) throw new Error(`id ${op.node.id} exists`);
        this.nodes.set(op.node.id, { id: op.node.id, kind: '', label: '', x: 0, y: 0, data: {}, ...op.node });
        return;
      }
      case 'update_node': {
        const n = this.nodes.get(op.id);
        if (!n) throw new Error(`no node ${op.id}`);
        this.nodes.set(op.id, { ...mergePatch(n, op.patch), id: op.id });
        return;
      }
      case 'remove_node': {
        if (!this.nodes.delete(op.id)) throw new Error(`no node ${op.id}`);
        for (const [id, e] of this.edges) if (e.source === op.id || e.target === op.id) this.edges.delete(id);
        return;
      }
      case 'add_edge': {
        const e = op.edge;
        if (this.nodes.has(e.id) || this.edges.has(e.id)) throw new Error(`id ${e.id} exists`);
        if (!this.nodes.has(e.source) || !this.nodes.has(e.target)) throw new Error(`edge ${e.id}: missing end`);
        this.edges.set(e.id, { id: e.id, kind: '', source: e.source, target: e.target, label: '', data: {}, ...e });
        return;
      }
      case 'update_edge': {
        const e = this.edges.get(op.id);
        if (!e) throw new Error(`no edge ${op.id}`);
        this.edges.set(op.id, { ...mergePatch(e, op.patch), id: op.id });
        return;
      }
      case 'remove_edge': {
        if (!this.edges.delete(op.id)) throw new Error(`no edge ${op.id}`);
        return;
      }
      case 'reset': {
        const g = Graph.from(op.state || { nodes: [], edges: [] });
        this.nodes = g.nodes;
        this.edges = g.edges;
        return;
      }
      default:
        throw new Error(`unknown op ${op.op}`);
    }
  }
}

/** A random id of n characters of [A-Za-z0-9]. @param {number} n */
export function randomId(n = 16) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return [...b].map((x) => abc[x % abc.length]).join('');
}

/**
 * The ops not yet acknowledged, in order, kept in storage (when given) so
 * that they survive a reload; each batch carries the Idempotency-Key it is
 * posted with, every time, so that a retry after a lost answer applies
 * nothing twice.
 */
export class OpQueue {
  /** @param {StorageLike|null} storage @param {string} key */
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    /** @type {Batch[]} */
    this.batches = [];
    if (storage) {
      try {
        const saved = JSON.parse(storage.getItem(key) || '[]');
        if (Array.isArray(saved)) this.batches = saved.filter((b) => b && typeof b.key === 'string' && Array.isArray(b.ops));
      } catch {
        this.batches = [];
      }
    }
  }

  get length() { return this.batches.length; }

  /** @param {Op[]} ops @returns {Batch} */
  push(ops) {
    const b = { key: randomId(24), ops, at: Date.now() };
    this.batches.push(b);
    this.save();
    return b;
  }

  /** @param {string} key */
  remove(key) {
    this.batches = this.batches.filter((b) => b.key !== key);
    this.save();
  }

  save() {
    if (!this.storage) return;
    if (this.batches.length === 0) this.storage.removeItem(this.key);
    else this.storage.setItem(this.key, JSON.stringify(this.batches));
  }
}

/**
 * Reads a text/event-stream body, calling onEvent for each event.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(ev: {event: string, id: string|null, data: string}) => void} onEvent
 * @param {AbortSignal} signal
 */
export async function readEvents(body, onEvent, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let event = '', data = [], id = null;
  const abort = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', abort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length > 0 || event) onEvent({ event: event || 'message', id, data: data.join('\n') });
          event = ''; data = []; id = null;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
      }
    }
  } finally {
    signal.removeEventListener('abort', abort);
  }
}

/**
 * One room, live. Events (all CustomEvents on this EventTarget):
 * - `status`: detail {status: Status}
 * - `change`: the graph changed; detail {ops?: Op[], mine?: boolean, reset?: 'snapshot'|'reset', version}
 * - `presence`: detail {users: User[], count}
 * - `queue`: the number of unacknowledged batches changed; detail {pending}
 * - `refused`: a queued batch was refused and dropped; detail {batch, error: ProblemError}
 * - `deleted`: the room is gone (404 or room_deleted); the client stops
 * - `error`: something failed that will be retried; detail {error}
 */
export class Room extends EventTarget {
  /**
   * @param {{room: string, base?: string, name?: string, presenceId?: string, clientId?: string,
   *   storage?: StorageLike|null, fetch?: typeof fetch, retryMs?: number, maxRetryMs?: number,
   *   presenceMs?: number}} opts
   */
  constructor(opts) {
    super();
    this.room = opts.room;
    this.base = (opts.base || '').replace(/\/$/, '');
    this.name = opts.name || '';
    this.presenceId = opts.presenceId || randomId(16);
    this.clientId = opts.clientId || 'tab-' + this.presenceId;
    this.fetch = opts.fetch || globalThis.fetch.bind(globalThis);
    this.retryMs = opts.retryMs ?? 250;
    this.maxRetryMs = opts.maxRetryMs ?? 2000;
    this.presenceMs = opts.presenceMs ?? 50;
    const storage = opts.storage !== undefined ? opts.storage : (globalThis.localStorage || null);
    this.queue = new OpQueue(storage, `liveshare:queue:${this.room}`);
    /** @type {Graph} */ this.graph = new Graph();
    /** the version of the graph; -1 until the stream gave one */
    this.version = -1;
    /** @type {Status} */ this.status = 'idle';
    /** @type {User[]} */ this.users = [];
    /** @type {Map<string, {resolve: Function, reject: Function}>} */
    this.waiting = new Map();
    this.abort = null;
    this.flushing = false;
    this.presenceTimer = null;
    /** @type {PresenceState} */ this.presencePending = {};
  }

  /** @param {string} type @param {any} [detail] */
  emit(type, detail) {
    // Node 18 (Debian's) has Event but not yet CustomEvent.
    const ev = typeof CustomEvent === 'function' ? new CustomEvent(type, { detail }) : Object.assign(new Event(type), { detail });
    this.dispatchEvent(ev);
  }

  /** @param {Status} s */
  setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', { status: s });
  }

  url(path) { return `${this.base}/rooms/${encodeURIComponent(this.room)}${path}`; }

  /** Opens the stream and keeps it open (reconnecting) until stop(). */
  start() {
    if (this.abort) return;
    this.abort = new AbortController();
    this.loop(this.abort.signal);
  }

  /** Closes the stream; queued ops stay queued (and stored). */
  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
    clearTimeout(this.presenceTimer);
    this.setStatus('closed');
  }

  async loop(signal) {
    let delay = this.retryMs;
    while (!signal.aborted) {
      this.setStatus('connecting');
      try {
        const q = new URLSearchParams({ presence_id: this.presenceId });
        if (this.name) q.set('name', this.name);
        const headers = { Accept: 'text/event-stream' };
        if (this.version >= 0) headers['Last-Event-ID'] = String(this.version);
        const res = await this.fetch(this.url(`/events?${q}`), { headers, signal, credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 404) {
          this.gone();
          return;
        }
        if (!res.ok || !res.body) throw await problemOf(res);
        let first = true;
        await readEvents(res.body, (ev) => {
          if (first) {
            first = false;
            delay = this.retryMs;
            this.setStatus('live');
            this.flush();
          }
          this.handle(ev);
        }, signal);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ProblemError && err.status >= 400 && err.status < 500 && err.status !== 429 && err.status !== 408) {
          this.emit('error', { error: err, fatal: true });
          this.stop();
          return;
        }
        this.emit('error', { error: err });
      }
      if (signal.aborted || this.status === 'closed') return;
      this.setStatus('offline');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, this.maxRetryMs);
    }
  }

  gone() {
    this.stop();
    this.emit('deleted', { room: this.room });
  }

  /** @param {{event: string, id: string|null, data: string}} ev */
  handle(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch { return; }
    switch (ev.event) {
      case 'snapshot':
      case 'reset':
        this.graph = Graph.from(data.state);
        this.version = data.version;
        this.emit('change', { reset: ev.event, version: this.version, snapshotId: data.snapshot_id });
        return;
      case 'ops': {
        const applied = [];
        for (const e of data.ops) {
          if (e.seq <= this.version) continue; // never twice
          try { this.graph.apply(e.op); } catch (err) { this.emit('error', { error: err }); }
          this.version = e.seq;
          applied.push(e);
        }
        if (applied.length) {
          this.emit('change', { ops: applied.map((e) => e.op), entries: applied, mine: applied.every((e) => e.client_id === this.clientId), version: this.version });
        }
        return;
      }
      case 'presence':
        this.users = data.users || [];
        this.emit('presence', { users: this.users, count: data.count });
        return;
      case 'room_deleted':
        this.gone();
        return;
      case 'auth_expired':
        this.emit('error', { error: new Error('access ended'), fatal: true });
        this.stop();
        return;
    }
  }

  /** @returns {number} batches not acknowledged yet */
  get pending() { return this.queue.length; }

  /**
   * The graph as it will be once the queued ops land: the acknowledged graph
   * with the pending ops applied on top (those that no longer apply are
   * skipped here; the server will refuse them).
   * @returns {Graph}
   */
  view() {
    if (this.queue.length === 0) return this.graph;
    const g = this.graph.clone();
    for (const b of this.queue.batches) {
      for (const op of b.ops) {
        try { g.apply(op); } catch { /* refused later, and reported then */ }
      }
    }
    return g;
  }

  /**
   * Queues ops as one batch (all or none) and posts them when the stream is
   * live, in order. The promise resolves with the server's answer once they
   * are committed, or rejects with a ProblemError when they are refused
   * (they are then dropped from the queue).
   * @param {Op[]} ops
   * @returns {Promise<{version: number, applied: number}>}
   */
  send(ops) {
    const b = this.queue.push(ops);
    const p = new Promise((resolve, reject) => this.waiting.set(b.key, { resolve, reject }));
    this.emit('queue', { pending: this.queue.length });
    this.emit('change', { pending: true, version: this.version });
    this.flush();
    return p;
  }

  /** Posts the queued batches in order while the stream is live. */
  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.status === 'live' && this.queue.length > 0) {
        const b = this.queue.batches[0];
        let res;
        try {
          res = await this.fetch(this.url('/ops'), {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Idempotency-Key': b.key },
            body: JSON.stringify({ ops: b.ops, client_id: this.clientId }),
          });
        } catch (err) {
          // Offline: the stream will notice too; the batch stays first.
          this.emit('error', { error: err });
          await sleep(this.retryMs, this.abort ? this.abort.signal : undefined);
          continue;
        }
        const w = this.waiting.get(b.key);
        if (res.ok) {
          const body = await res.json();
          this.queue.remove(b.key);
          this.waiting.delete(b.key);
          this.emit('queue', { pending: this.queue.length });
          if (w) w.resolve(body);
          continue;
        }
        const err = await problemOf(res);
        if (res.status >= 500 || res.status === 429 || res.status === 408) {
          this.emit('error', { error: err });
          await sleep(Math.max(this.retryMs, 1000 * (Number(res.headers.get('Retry-After')) || 0)), this.abort ? this.abort.signal : undefined);
          continue;
        }
        if (res.status === 404 && err.problem.code === 'room_not_found') {
          this.gone();
          return;
        }
        // Refused (invalid op, conflict, too large, forbidden): dropped,
        // and said so, never silently.
        this.queue.remove(b.key);
        this.waiting.delete(b.key);
        this.emit('queue', { pending: this.queue.length });
        this.emit('refused', { batch: b, error: err });
        this.emit('change', { pending: true, version: this.version });
        if (w) w.reject(err);
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Sets part of this subscriber's presence state (null removes a part).
   * Changes are gathered and sent at most once per presenceMs, and only
   * while the stream is live; presence is ephemeral, so nothing is queued.
   * @param {PresenceState} state
   */
  setPresence(state) {
    Object.assign(this.presencePending, state);
    if (this.presenceTimer) return;
    this.presenceTimer = setTimeout(() => this.sendPresence(), this.presenceMs);
  }

  async sendPresence() {
    this.presenceTimer = null;
    if (this.status !== 'live' || Object.keys(this.presencePending).length === 0) return;
    const body = this.presencePending;
    this.presencePending = {};
    try {
      const res = await this.fetch(this.url(`/presence/${this.presenceId}`), {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status === 429) {
        this.setPresence({ ...body, ...this.presencePending }); // again, a little later
      } else if (!res.ok) {
        this.emit('error', { error: await problemOf(res) });
      }
    } catch (err) {
      this.emit('error', { error: err });
    }
  }

  /** @returns {User|undefined} this client's own entry in presence */
  me() { return this.users.find((u) => u.presence_id === this.presenceId); }
}

/** @param {Response} res @returns {Promise<ProblemError>} */
async function problemOf(res) {
  let p = {};
  try { p = await res.json(); } catch { p = { detail: res.statusText }; }
  return new ProblemError(res.status, p && typeof p === 'object' ? p : { detail: String(p) });
}

/** @param {number} ms @param {AbortSignal} [signal] */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
