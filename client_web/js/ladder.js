// The data ladder (docs/protocol.md 4.2): 'audio' (audio + captions), 'captions' (captions only) and 'light'
// (text-light: final sentences only, aggregates every 5 s). The node sends each mode only what it needs, so a step down
// saves the citizen's data at once.
//
// The citizen picks the highest rung they want, in one tap (`want`). The page never goes above it, and steps down by
// itself when the network cannot carry it: from the browser's hints (Save-Data, effectiveType 2g) and from what it
// measures on the live connection: the round trip of an application ping, which grows as soon as the downlink queues
// more than it carries (audio at 24 kbit/s on a 2G link), and the bytes received per second. It steps back up, one rung
// at a time, once the link has been calm for a while.

export const RUNGS = ['light', 'captions', 'audio']; // bottom to top

const PROBE_EVERY_MS = 2000;
const CONGESTED_RTT_MS = 1500; // a ping answered later than this: the link queues what we ask of it
const LOST_PROBE_MS = 3000; // a ping unanswered this long counts as congested
const CALM_RTT_MS = 600;
const CALM_PROBES_TO_STEP_UP = 4; // about 8 s of a calm link before going up a rung
const HOLD_AFTER_DOWN_MS = 10000; // no step up this soon after a step down (no flapping)
const STORE_KEY = 'jansamvad.ladder';

function hints() {
  const c = globalThis.navigator?.connection;
  if (!c) return { ceiling: 'audio', why: '' };
  if (c.saveData) return { ceiling: 'light', why: 'save-data' };
  if (c.effectiveType === 'slow-2g' || c.effectiveType === '2g') return { ceiling: 'light', why: c.effectiveType };
  return { ceiling: 'audio', why: '' };
}

const rank = (mode) => RUNGS.indexOf(mode);
const lower = (a, b) => (rank(a) <= rank(b) ? a : b);

export class Ladder {
  /**
   * conn: the Conn (conn.js); onChange(mode, detail): called when the mode in effect changes (and for new measures).
   */
  constructor(conn, { onChange = () => {} } = {}) {
    this.conn = conn;
    this.onChange = onChange;
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(STORE_KEY) || 'null');
    } catch {
      saved = null;
    }
    // Audio is opt-in: a citizen who never chose starts with captions, or text-light where the browser says so.
    this.want = RUNGS.includes(saved) ? saved : lower('captions', hints().ceiling);
    this.cap = 'audio'; // what the measurements allow
    this.mode = this._effective();
    this.calm = 0;
    this.downAt = 0;
    this.rttMs = null;
    this.kbps = null;
    this.probe = null; // {id, at}
    this.nextId = 1e9; // request ids of its own, far from the Conn's
    this.helloMode = null; // the mode the last hello carried (helloFields)
    this.lastBytes = conn.bytesIn;
    this.lastAt = Date.now();
    conn.seqHolesExpected = this.mode === 'light';
    conn.on('pong', (msg) => this._pong(msg));
    conn.on('welcome', () => {
      this.probe = null;
      // A step taken while the hello was on its way (built before the socket opened, since it rides in the offer:
      // the connect and the join on 2G take seconds, the moment a citizen taps a rung) is not in the hello, and
      // `send` dropped it then: the node joined in the hello's mode. Tell it now.
      if (this.helloMode !== null && this.helloMode !== this.mode) {
        this.conn.send({ t: 'mode', mode: this.mode }, { paced: false });
      }
    });
    this.timer = setInterval(() => this._tick(), PROBE_EVERY_MS);
    const c = globalThis.navigator?.connection;
    if (c && c.addEventListener) c.addEventListener('change', () => this._apply('hint'));
  }

  /** The hello's fields: a session starts in the mode in effect (and resumes in it). */
  helloFields() {
    this.helloMode = this.mode;
    return { mode: this.mode };
  }

  /** The citizen's tap: the highest rung they want. */
  choose(mode) {
    if (!RUNGS.includes(mode)) return;
    this.want = mode;
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(mode));
    } catch {
      /* private mode: the choice lasts for this page */
    }
    if (rank(mode) > rank(this.cap)) {
      this.cap = mode; // a tap is a fresh try: the measurements may step down again
      this.calm = 0;
    }
    this._apply('tap');
  }

  stop() {
    clearInterval(this.timer);
  }

  _effective() {
    return lower(lower(this.want, this.cap), hints().ceiling);
  }

  _apply(why) {
    const mode = this._effective();
    if (mode === this.mode) {
      this.onChange(this.mode, { why, changed: false });
      return;
    }
    const from = this.mode;
    this.mode = mode;
    this.conn.seqHolesExpected = mode === 'light' || from === 'light';
    this.conn.send({ t: 'mode', mode }, { paced: false }); // not connected: the next hello carries it
    if (mode !== 'light' && from === 'light') {
      // Frames already in flight in light mode may still skip a seq; expect contiguous seqs from the next probe.
      setTimeout(() => {
        this.conn.seqHolesExpected = this.mode === 'light';
      }, PROBE_EVERY_MS);
    }
    this.onChange(mode, { why, changed: true, from });
  }

  _tick() {
    const now = Date.now();
    const bytes = this.conn.bytesIn;
    this.kbps = ((bytes - this.lastBytes) * 8) / Math.max(1, now - this.lastAt);
    this.lastBytes = bytes;
    this.lastAt = now;
    if (this.probe && now - this.probe.at > LOST_PROBE_MS) {
      this.probe = null;
      this._congested(now, 'lost ping');
    }
    if (!this.probe && this.conn.welcomed) {
      this.probe = { id: this.nextId++, at: now };
      this.conn.send({ t: 'ping', id: this.probe.id }, { paced: false });
    }
    this.onChange(this.mode, { why: 'measure', changed: false });
  }

  _pong(msg) {
    if (!this.probe || msg.re !== this.probe.id) return;
    const now = Date.now();
    this.rttMs = now - this.probe.at;
    this.probe = null;
    if (this.rttMs > CONGESTED_RTT_MS) {
      this._congested(now, `rtt ${this.rttMs} ms`);
      return;
    }
    this.calm = this.rttMs < CALM_RTT_MS ? this.calm + 1 : 0;
    if (this.calm >= CALM_PROBES_TO_STEP_UP && now - this.downAt > HOLD_AFTER_DOWN_MS && rank(this.cap) < rank(this.want)) {
      this.cap = RUNGS[rank(this.cap) + 1];
      this.calm = 0;
      this._apply('calm');
    }
  }

  _congested(now, why) {
    this.calm = 0;
    const current = this._effective();
    if (rank(current) === 0) return;
    this.cap = RUNGS[rank(current) - 1];
    this.downAt = now;
    this._apply(`congested: ${why}`);
  }
}
