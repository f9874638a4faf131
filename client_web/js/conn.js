// JanSamvad protocol v1 client (docs/protocol.md): one WebSocket to /ws, hello/welcome, event-stream sequencing,
// request ids with pending promises, a persistent outbox for actions that must not be lost or doubled, client-side
// pacing under the node's rate limit, and reconnects with exponential backoff and full jitter.
//
// Wire encoding: msgpack (binary frames) through the vendored @msgpack/msgpack build (vendor/msgpack.min.js, a
// classic script that defines globalThis.MessagePack; loaded here on first connect unless the page already has it).
// `?enc=json` in the page URL switches to the JSON subprotocol for debugging.
import { newKey } from './ui.js';

export { newKey };

// Close codes after which the client reconnects (docs/protocol.md 6.2, "rule of thumb").
export const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4008, 4009]);
// townhall_ended: the client stops for good in state 'ended' (not 'offline').
export const ENDED_CODE = 4005;

// Error codes after which an outbox action is retried (with the same key) rather than dropped.
// (`timed_out`: a moderator paused this citizen for `retry_ms`.)
const RETRY_ERRORS = new Set(['rate_limited', 'unavailable', 'internal', 'timed_out']);

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
const PING_EVERY_MS = 25000;
const SILENCE_LIMIT_MS = 65000;
const STABLE_AFTER_MS = 10000;

// ---------------------------------------------------------------- codecs

const VENDOR_MSGPACK = '/vendor/msgpack.min.js';

export const msgpackCodec = {
  subprotocol: 'jansamvad.v1.msgpack',
  encode: (msg) => globalThis.MessagePack.encode(msg, { ignoreUndefined: true }),
  decode: (data) => (typeof data === 'string' ? null : globalThis.MessagePack.decode(new Uint8Array(data))),
};

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The hello entry of the subprotocol offer: the encoded hello (bytes, or JSON text as UTF-8) in base64url. */
export function helloEntry(encoded) {
  const bytes = typeof encoded === 'string' ? new TextEncoder().encode(encoded) : encoded;
  return `jansamvad.v1.hello.${toBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// JSON carries bytes fields (audio chunks) as base64 strings (docs/protocol.md 1).
export const jsonCodec = {
  subprotocol: 'jansamvad.v1.json',
  encode: (msg) => JSON.stringify(msg, (k, v) => (v instanceof Uint8Array ? toBase64(v) : v)),
  decode: (data) => {
    if (typeof data !== 'string') return null;
    const msg = JSON.parse(data);
    if (msg && msg.t === 'audio' && typeof msg.data === 'string') msg.data = fromBase64(msg.data);
    return msg;
  },
};

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => {
      script.remove();
      reject(new Error(`cannot load ${src}`));
    };
    document.head.append(script);
  });
}

let codecPromise = null;

/** msgpack unless the page says ?enc=json. Rejects (and may be retried) while vendor/msgpack.min.js cannot load. */
export function loadCodec(loc = location) {
  if (!codecPromise) {
    codecPromise = (async () => {
      if (new URLSearchParams(loc.search).get('enc') === 'json') return jsonCodec;
      if (!globalThis.MessagePack) await loadScript(VENDOR_MSGPACK);
      if (!globalThis.MessagePack) throw new Error('MessagePack missing');
      return msgpackCodec;
    })();
    codecPromise.catch(() => {
      codecPromise = null;
    });
  }
  return codecPromise;
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
 *   lastSeq       the highest seq already applied (a page that restored its state from storage)
 *   helloExtra    () => fields added to a resuming hello (the moderator page's last_mseq)
 *   helloFields   () => fields added to every hello (the citizen page's listening `mode`, docs/protocol.md 4.2)
 *   rate          {perSec, burst}: client-side pacing, kept under the node's per-connection limit
 *   codec, url    overrides for tests
 *
 * Events (conn.on(type, fn)): every node message type by its `t` ('welcome', 'snapshot', 'speech', ...),
 * plus 'state' (fn(state, detail)) with state one of 'connecting', 'live', 'reconnecting', 'offline', 'ended' (closed
 * with 4005: the town hall is over; final, like 'offline' after a close that is not retried),
 * 'outbox' (fn(item, status, detail)) with status 'queued' | 'sending' | 'acked' | 'failed',
 * and 'closed' (fn(code, reason)) when the client stops for good.
 * Stream events are delivered at most once and in seq order; older or repeated seqs are dropped.
 */
export class Conn {
  constructor(opts) {
    this.th = opts.th;
    this.getToken = opts.getToken;
    this.onUnauthorized = opts.onUnauthorized || null;
    this.outboxKey = opts.outboxKey || null;
    this.resume = opts.resume !== false;
    this.helloExtra = opts.helloExtra || null;
    this.helloFields = opts.helloFields || null;
    // In text-light mode the node leaves out partial transcripts, so their seqs are holes on purpose (protocol 4.2).
    this.seqHolesExpected = false;
    this.bytesIn = 0; // payload bytes received on every socket so far (the data ladder measures with it)
    this.codec = opts.codec || null; // chosen on first connect (loadCodec)
    this.url = opts.url || wsUrl();
    this.rate = opts.rate || { perSec: 4, burst: 12 };
    this.handlers = new Map();
    this.ws = null;
    this.state = 'offline';
    this.lastSeq = typeof opts.lastSeq === 'number' ? opts.lastSeq : null; // null before the first snapshot/event
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
    this.stopped = true;
    this.welcomed = false;
    this.tokens = this.rate.burst;
    this.tokensAt = Date.now();
    this.paced = []; // frames waiting for a token
    this.paceTimer = null;
    this.onOnline = () => {
      if (this.stopped) return;
      this.attempt = 0;
      if (!this.ws) {
        clearTimeout(this.timer);
        this._connect();
      }
    };
    this.onOffline = () => {
      // The phone says the network is gone: the socket is dead even if no close event came yet.
      if (!this.stopped && this.ws) this._drop('no network');
    };
    this.onVisible = () => {
      if (document.visibilityState !== 'visible' || this.stopped) return;
      if (this.ws && this.welcomed && Date.now() - this.lastHeard > PING_EVERY_MS) this._sendRaw({ t: 'ping' });
      if (!this.ws && this.timer) this.onOnline();
    };
    // No `?.` or `??` in the modules a booth screen loads: an older TV browser (before Chrome 80) cannot parse them.
    if (globalThis.addEventListener) {
      globalThis.addEventListener('online', this.onOnline);
      globalThis.addEventListener('offline', this.onOffline);
    }
    if (globalThis.document) globalThis.document.addEventListener('visibilitychange', this.onVisible);
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
    for (const item of this.outbox) this._emit('outbox', item, 'queued');
    this._connect();
    return this;
  }

  /** Leave on purpose: the node closes with 1000. */
  stop(reason = '') {
    this.stopped = true;
    clearTimeout(this.timer);
    this._stopPing();
    this._clearPaced();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      try {
        this.ws.send(this.codec.encode({ t: 'leave' }));
      } catch {
        /* closing anyway */
      }
      this.ws.close(1000);
    }
    this.ws = null;
    this.welcomed = false;
    this._failPending('disconnected');
    this._setState('offline', reason);
  }

  async _connect() {
    this.timer = null;
    if (this.stopped || this.ws) return;
    if (globalThis.navigator && navigator.onLine === false) {
      this._retryLater('no network');
      return;
    }
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this._retryLater(`no token: ${e.message || e}`);
      return;
    }
    if (!this.codec) {
      try {
        this.codec = await loadCodec();
      } catch (e) {
        this._retryLater(String(e.message || e));
        return;
      }
    }
    if (this.stopped || this.ws) return;
    if (!token) {
      this._halt('no token');
      return;
    }
    // The hello rides in the subprotocol offer (docs/protocol.md 1): the node answers `<subprotocol>+hello` and joins
    // at once, so the 101 arrives with the welcome, one round trip instead of two (most of a join's wait on 2G). A
    // node that answers the plain name gets the hello as the first message, as before.
    const hello = { t: 'hello', token };
    if (this.th) hello.th = this.th;
    if (this.helloFields) Object.assign(hello, this.helloFields());
    if (this.resume && this.lastSeq !== null) {
      hello.last_seq = this.lastSeq;
      if (this.helloExtra) Object.assign(hello, this.helloExtra());
    }
    const withHello = `${this.codec.subprotocol}+hello`;
    let ws;
    try {
      const offer = [withHello, this.codec.subprotocol, helloEntry(this.codec.encode(hello))];
      ws = new WebSocket(this.url, offer);
    } catch (e) {
      this._retryLater(String(e));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      if (ws.protocol !== withHello) {
        if (ws.protocol && ws.protocol !== this.codec.subprotocol) console.warn('node chose subprotocol', ws.protocol);
        this._sendRaw(hello);
      }
      this.lastHeard = Date.now();
      this._startPing();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      this.bytesIn += typeof ev.data === 'string' ? ev.data.length : ev.data.byteLength;
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
      this._lost();
      this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
  }

  /** Bookkeeping when the current socket is gone: pending requests fail, outbox items wait for the next socket. */
  _lost() {
    this.ws = null;
    this.welcomed = false;
    this._stopPing();
    this._clearPaced();
    this._failPending('disconnected');
    for (const item of this.outbox) this._emit('outbox', item, 'queued');
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
      this._halt(reason, code);
      return;
    }
    if (RECONNECT_CODES.has(code)) {
      // The node said `reconnect {after_ms}` before closing: wait that long plus jitter instead of the usual backoff.
      const delay = after != null ? after + Math.random() * 1000 : undefined;
      this._retryLater(reason || `closed ${code}`, delay);
      return;
    }
    this._halt(reason, code);
  }

  _halt(reason, code) {
    this.stopped = true;
    clearTimeout(this.timer);
    // 4005: the town hall is over. That is not a network failure, and there is nothing to reconnect to.
    this._setState(code === ENDED_CODE ? 'ended' : 'offline', reason);
    this._emit('closed', code, reason);
  }

  /** Exponential backoff with full jitter: a random wait in [0, min(cap, base * 2^attempt)). */
  backoffDelay() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    return Math.random() * ceiling;
  }

  _retryLater(why, delay) {
    if (this.stopped) return;
    if (delay === undefined) delay = this.backoffDelay();
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
        this._drop('no answer from node'); // the socket looks dead (no close event yet): reconnect
        return;
      }
      if (this.welcomed) this._sendRaw({ t: 'ping' });
    }, PING_EVERY_MS);
  }

  /** Abandon the current socket (without waiting for its close event) and reconnect with backoff. */
  _drop(why) {
    const ws = this.ws;
    this._lost();
    try {
      if (ws) ws.close(1000);
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

  // ---- pacing: a token bucket below the node's limit (citizens: 5/s, burst 20), so a burst of queued actions
  // after a reconnect is spread out instead of being answered with rate_limited (which counts towards max_errors).

  _paced(msg, onSent) {
    this.paced.push({ msg, onSent });
    this._pump();
  }

  _pump() {
    const now = Date.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.tokensAt) / 1000) * this.rate.perSec);
    this.tokensAt = now;
    while (this.paced.length && this.tokens >= 1) {
      const { msg, onSent } = this.paced.shift();
      if (!this._sendRaw(msg)) continue;
      this.tokens -= 1;
      if (onSent) onSent();
    }
    if (this.paced.length && !this.paceTimer) {
      const wait = ((1 - this.tokens) / this.rate.perSec) * 1000;
      this.paceTimer = setTimeout(() => {
        this.paceTimer = null;
        this._pump();
      }, Math.max(10, wait));
    }
  }

  _clearPaced() {
    this.paced = [];
    clearTimeout(this.paceTimer);
    this.paceTimer = null;
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
      if (this.lastSeq !== null && msg.seq > this.lastSeq + 1 && !this.seqHolesExpected) {
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

  /** Start again from a fresh snapshot: reconnect without last_seq (a page saw a hole in a stream of its own). */
  resync(why) {
    console.warn(`resyncing: ${why}`);
    this.lastSeq = null;
    if (!this.stopped && this.ws) this._drop('resync');
  }

  /** Send a request with an id; resolves with the ack, rejects with RequestError. */
  request(msg) {
    const id = this.nextId++;
    const full = { ...msg, id };
    return new Promise((resolve, reject) => {
      if (!this.welcomed) {
        reject(new RequestError({ code: 'disconnected', msg: 'not connected' }));
        return;
      }
      this.pending.set(id, { resolve, reject, msg: full });
      this._paced(full);
    });
  }

  /** Fire and forget (react, audio). False when not connected. */
  send(msg, { paced = true } = {}) {
    if (!this.welcomed) return false;
    if (paced) this._paced(msg);
    else return this._sendRaw(msg);
    return true;
  }

  /** Frames handed to the socket but not yet written (bytes); a sender of audio skips chunks when this grows. */
  buffered() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  // ---- outbox: citizen actions that must not be lost or doubled ----

  /**
   * Queue an action with an idempotency key; it is kept (in localStorage when outboxKey is set) until acked, and
   * resent with the same key after every reconnect. Returns the outbox item ({key, msg, ts}).
   */
  enqueue(msg) {
    const key = msg.key || newKey();
    const item = { key, msg: { ...msg, key }, ts: Date.now() };
    this.outbox.push(item);
    this._saveOutbox();
    this._emit('outbox', item, 'queued');
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
    if (!this.welcomed || !this.outbox.includes(item)) return;
    for (const p of this.pending.values()) if (p.outboxKey === item.key) return; // in flight
    const id = this.nextId++;
    this.pending.set(id, { resolve() {}, reject() {}, msg: item.msg, outboxKey: item.key });
    this._paced({ ...item.msg, id }, () => this._emit('outbox', item, 'sending'));
  }

  _settleOutbox(key, msg) {
    const item = this.outbox.find((i) => i.key === key);
    if (!item) return;
    if (msg.t === 'error' && RETRY_ERRORS.has(msg.code)) {
      const wait = (msg.retry_ms || 2000) + Math.random() * 500;
      setTimeout(() => this._sendOutboxItem(item), wait);
      this._emit('outbox', item, 'queued', msg);
      return;
    }
    this.outbox = this.outbox.filter((i) => i.key !== key);
    this._saveOutbox();
    this._emit('outbox', item, msg.t === 'ack' ? 'acked' : 'failed', msg);
  }
}
