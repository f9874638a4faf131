// JanSamvad protocol v1 client: one WebSocket to /ws, hello/welcome, event-stream sequencing,
// request ids with pending promises, a persistent outbox for citizen actions, and reconnects.
// See docs/protocol.md. No dependencies; works in any modern browser.

export const SUBPROTOCOL = 'jansamvad.v1.json';

// Close codes after which the client reconnects (docs/protocol.md 6.2, "rule of thumb").
export const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4008, 4009]);

export const CLOSE_REASONS = {
  1000: 'session ended',
  1002: 'protocol error (client bug)',
  1003: 'unsupported data (client bug)',
  1007: 'invalid data (client bug)',
  1009: 'message too big',
  4000: 'bad hello',
  4001: 'not authorised (token missing or expired)',
  4003: 'forbidden for this town hall',
  4004: 'town hall not found',
  4005: 'the town hall has ended',
  4010: 'too many errors',
  4011: 'banned from this town hall',
};

// Error codes after which an outbox action is retried (with the same key) rather than dropped.
const RETRY_ERRORS = new Set(['rate_limited', 'unavailable', 'internal']);

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
const PING_EVERY_MS = 25000;
const SILENCE_LIMIT_MS = 65000;
const STABLE_AFTER_MS = 10000;

// The JSON codec. A later change swaps in msgpack with the same interface.
export const jsonCodec = {
  subprotocol: SUBPROTOCOL,
  binaryType: 'arraybuffer',
  encode: (msg) => JSON.stringify(msg),
  decode: (data) => (typeof data === 'string' ? JSON.parse(data) : null),
};

/** An idempotency key: 8-64 chars of [A-Za-z0-9_-]. */
export function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, '');
  const a = new Uint8Array(16);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** WebSocket URL of the node that served this page. */
export function wsUrl(loc = location) {
  return (loc.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + loc.host + '/ws';
}

function loadJSON(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v ? JSON.parse(v) : fallback;
  } catch {
    return fallback;
  }
}

function saveJSON(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the outbox then lives in memory only */
  }
}

export class RequestError extends Error {
  constructor(msg) {
    super(msg.msg || msg.code || 'error');
    this.code = msg.code;
    this.field = msg.field;
    this.retryMs = msg.retry_ms;
  }
}

/**
 * Conn: the protocol session.
 *
 * options:
 *   th            town hall id
 *   getToken      async () => token string (called before every connect)
 *   onUnauthorized async () => token string | null: called on close 4001 (citizens join again); null stops
 *   outboxKey     localStorage key for the persistent outbox (citizens); omit for none
 *   resume        send last_seq on reconnect (default true)
 *   codec, url    overrides for tests
 *
 * Events (conn.on(type, fn)): every node message type by its `t` ('welcome', 'snapshot', 'speech', ...),
 * plus 'state' (fn(state, detail)) with state one of 'connecting', 'live', 'reconnecting', 'offline',
 * and 'outbox' (fn(item, status, detail)) with status 'sending' | 'acked' | 'failed'.
 * Stream events are delivered at most once and in seq order; older or repeated seqs are dropped.
 */
export class Conn {
  constructor(opts) {
    this.th = opts.th;
    this.getToken = opts.getToken;
    this.onUnauthorized = opts.onUnauthorized || null;
    this.outboxKey = opts.outboxKey || null;
    this.resume = opts.resume !== false;
    this.codec = opts.codec || jsonCodec;
    this.url = opts.url || wsUrl();
    this.handlers = new Map();
    this.ws = null;
    this.state = 'offline';
    this.lastSeq = null; // highest seq applied; null before the first snapshot/event
    this.welcome = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, msg, outboxKey}
    this.outbox = this.outboxKey ? loadJSON(this.outboxKey, []) : [];
    this.attempt = 0;
    this.welcomedAt = 0;
    this.reconnectAfterMs = null;
    this.rejoined = false;
    this.timer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.stopped = false;
    this.welcomed = false;
    this.onOnline = () => {
      if (!this.stopped && this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
        this._connect();
      }
    };
    globalThis.addEventListener?.('online', this.onOnline);
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  _emit(type, ...args) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(...args);
      } catch (e) {
        console.error('handler for', type, 'failed', e);
      }
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit('state', state, detail);
  }

  start() {
    this.stopped = false;
    this._setState('connecting');
    this._connect();
    return this;
  }

  /** Leave on purpose: the node closes with 1000. */
  stop(reason = '') {
    this.stopped = true;
    clearTimeout(this.timer);
    this._stopPing();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      try {
        this.ws.send(this.codec.encode({ t: 'leave' }));
      } catch {
        /* closing anyway */
      }
      this.ws.close(1000);
    }
    this._failPending('disconnected');
    this._setState('offline', reason);
  }

  async _connect() {
    this.timer = null;
    if (this.stopped) return;
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this._retryLater(`no token: ${e.message || e}`);
      return;
    }
    if (!token) {
      this._halt('no token');
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this.url, [this.codec.subprotocol]);
    } catch (e) {
      this._retryLater(String(e));
      return;
    }
    ws.binaryType = this.codec.binaryType;
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      if (ws.protocol && ws.protocol !== this.codec.subprotocol) {
        console.warn('node chose subprotocol', ws.protocol);
      }
      const hello = { t: 'hello', token };
      if (this.th) hello.th = this.th;
      if (this.resume && this.lastSeq !== null) hello.last_seq = this.lastSeq;
      this._sendRaw(hello);
      this.lastHeard = Date.now();
      this._startPing();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = this.codec.decode(ev.data);
      } catch (e) {
        console.warn('undecodable frame', e);
        return;
      }
      if (msg && typeof msg === 'object' && typeof msg.t === 'string') this._dispatch(msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.welcomed = false;
      this._stopPing();
      this._failPending('disconnected');
      this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
  }

  async _onClose(code, reason) {
    if (this.stopped) return;
    const after = this.reconnectAfterMs;
    this.reconnectAfterMs = null;
    // A connection that stayed up for a while starts the backoff afresh; one that keeps dying right after
    // the welcome keeps backing off.
    if (this.welcomedAt && Date.now() - this.welcomedAt > STABLE_AFTER_MS) this.attempt = 0;
    this.welcomedAt = 0;
    if (code === 4001 && this.onUnauthorized && !this.rejoined) {
      // Citizens: the token expired or was refused; join again for a new one, then reconnect (once: a fresh
      // token refused again before any welcome stops here instead of looping).
      this.rejoined = true;
      this._setState('reconnecting', 'new token');
      let ok = null;
      try {
        ok = await this.onUnauthorized();
      } catch (e) {
        console.warn('rejoin failed', e);
      }
      if (ok) {
        this._retryLater('new token', 0);
        return;
      }
      this._halt(CLOSE_REASONS[4001], code);
      return;
    }
    if (RECONNECT_CODES.has(code)) {
      let delay;
      if (after != null) {
        // The node said `reconnect {after_ms}` before closing (the spec says with 1012; honour it on any
        // reconnectable code): wait that long plus a little jitter instead of the usual backoff.
        delay = after + Math.random() * 1000;
      }
      this._retryLater(reason || `closed ${code}`, delay);
      return;
    }
    this._halt(CLOSE_REASONS[code] || reason || `closed (${code})`, code);
  }

  _halt(reason, code) {
    this.stopped = true;
    clearTimeout(this.timer);
    this._setState('offline', reason);
    this._emit('closed', code, reason);
  }

  _retryLater(why, delay) {
    if (this.stopped) return;
    if (delay === undefined) {
      // exponential backoff with full jitter
      const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
      delay = Math.random() * ceiling;
      this.attempt = Math.min(this.attempt + 1, 16);
    }
    // Without a network the indicator says offline; the retry still runs, and the 'online' event hurries it.
    if (globalThis.navigator && navigator.onLine === false) this._setState('offline', 'no network');
    else this._setState('reconnecting', why);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), delay);
  }

  _startPing() {
    this._stopPing();
    this.pingTimer = setInterval(() => {
      if (!this.ws) return;
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
        // The socket looks dead (no close event yet): drop it and reconnect.
        this._drop('no answer from node');
        return;
      }
      if (this.welcomed) this._sendRaw({ t: 'ping' });
    }, PING_EVERY_MS);
  }

  /** Abandon the current socket (without waiting for its close event) and reconnect with backoff. */
  _drop(why) {
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    this._stopPing();
    this._failPending('disconnected');
    try {
      ws?.close(1000);
    } catch {
      /* ignore */
    }
    this._onClose(1006, why);
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  _sendRaw(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(this.codec.encode(msg));
    return true;
  }

  _failPending(code) {
    const pending = this.pending;
    this.pending = new Map();
    for (const p of pending.values()) {
      if (!p.outboxKey) p.reject(new RequestError({ code, msg: 'connection lost before the node answered' }));
      // outbox items stay in the outbox and are resent after the next welcome
    }
  }

  _dispatch(msg) {
    const t = msg.t;
    if (t === 'welcome') {
      this.welcome = msg;
      this.welcomed = true;
      this.welcomedAt = Date.now();
      this.rejoined = false;
      this._setState('live');
      this._emit('welcome', msg);
      this._flushOutbox();
      return;
    }
    if (t === 'snapshot') {
      if (typeof msg.seq === 'number') this.lastSeq = msg.seq;
      this._emit('snapshot', msg);
      return;
    }
    if (t === 'ack' || t === 'error') {
      const p = msg.re !== undefined ? this.pending.get(msg.re) : undefined;
      if (p) {
        this.pending.delete(msg.re);
        if (p.outboxKey) this._settleOutbox(p.outboxKey, msg);
        if (t === 'ack') p.resolve(msg);
        else p.reject(new RequestError(msg));
      }
      this._emit(t, msg);
      return;
    }
    if (t === 'reconnect') {
      this.reconnectAfterMs = typeof msg.after_ms === 'number' ? msg.after_ms : null;
      this._emit(t, msg);
      return;
    }
    if (typeof msg.seq === 'number') {
      if (this.lastSeq !== null && msg.seq <= this.lastSeq) return; // already applied
      if (this.lastSeq !== null && msg.seq > this.lastSeq + 1) {
        // A hole in the stream (the protocol promises none): do not apply out of order; reconnect without
        // last_seq so the node sends a fresh snapshot.
        console.warn(`seq gap: have ${this.lastSeq}, got ${msg.seq}; resyncing`);
        this.lastSeq = null;
        this._drop('resync');
        return;
      }
      this.lastSeq = msg.seq;
    }
    this._emit(t, msg);
  }

  /** Send a request with an id; resolves with the ack, rejects with RequestError. */
  request(msg) {
    const id = this.nextId++;
    const full = { ...msg, id };
    return new Promise((resolve, reject) => {
      if (!this.welcomed || !this._sendRaw(full)) {
        reject(new RequestError({ code: 'disconnected', msg: 'not connected' }));
        return;
      }
      this.pending.set(id, { resolve, reject, msg: full });
    });
  }

  /** Fire and forget (react, ping). */
  send(msg) {
    return this.welcomed && this._sendRaw(msg);
  }

  // ---- outbox: citizen actions that must not be lost or doubled ----

  /**
   * Queue an action with an idempotency key; it is kept (in localStorage when outboxKey is set)
   * until acked, and resent with the same key after every reconnect.
   * Returns the outbox item ({key, msg, ts}).
   */
  enqueue(msg) {
    const key = msg.key || newKey();
    const item = { key, msg: { ...msg, key }, ts: Date.now() };
    this.outbox.push(item);
    this._saveOutbox();
    this._emit('outbox', item, 'sending');
    this._sendOutboxItem(item);
    return item;
  }

  pendingOutbox() {
    return this.outbox.slice();
  }

  _saveOutbox() {
    if (this.outboxKey) saveJSON(this.outboxKey, this.outbox);
  }

  _flushOutbox() {
    for (const item of this.outbox) this._sendOutboxItem(item);
  }

  _sendOutboxItem(item) {
    if (!this.welcomed) return;
    for (const p of this.pending.values()) if (p.outboxKey === item.key) return; // in flight
    const id = this.nextId++;
    if (!this._sendRaw({ ...item.msg, id })) return;
    this.pending.set(id, { resolve() {}, reject() {}, msg: item.msg, outboxKey: item.key });
  }

  _settleOutbox(key, msg) {
    const item = this.outbox.find((i) => i.key === key);
    if (!item) return;
    if (msg.t === 'error' && RETRY_ERRORS.has(msg.code)) {
      const wait = (msg.retry_ms || 2000) + Math.random() * 500;
      setTimeout(() => this._sendOutboxItem(item), wait);
      this._emit('outbox', item, 'sending', msg);
      return;
    }
    this.outbox = this.outbox.filter((i) => i.key !== key);
    this._saveOutbox();
    this._emit('outbox', item, msg.t === 'ack' ? 'acked' : 'failed', msg);
  }
}
