// Live audio: the leader's Broadcaster (MediaRecorder, audio/webm;codecs=opus, short chunks sent as `audio`
// messages) and the citizen's LivePlayer (Media Source Extensions).
//
// A recording's first chunk (`init: true`) starts with the WebM header (EBML, Segment, Tracks); every chunk after it
// continues the same byte stream. Chrome's recorder writes Clusters of unknown size and starts a new one every few
// hundred ms, so a listener that joins late, or misses a chunk, appends the header and then resumes at the next
// Cluster start (ID 1F 43 B6 75 followed by its Timecode element E7). The SourceBuffer runs in "sequence" mode: each
// appended piece plays right after the previous one, whatever the recording's own timestamps say.

export const AUDIO_MIME = 'audio/webm;codecs=opus';
const CHUNK_MS = 300;
const BITRATE = 24000; // speech at 24 kbit/s: fine on 2G/3G
// How far the play head runs behind the newest audio it has (seconds buffered ahead of it). Every second of margin is
// a second of glass-to-ear latency, but a margin is what rides out late chunks: a busy node delivers in bursts (a slow
// tick carries 2-3 chunks at once), and a player that just keeps what a burst gave it stays that much later for ever.
// So: aim for TARGET_AHEAD_S; past CATCH_UP_ABOVE_S play a little faster (speech at 1.1x with the pitch kept is hard
// to notice, a skip is not) until back near the target; only past JUMP_ABOVE_S (e.g. after a long stall ended in a
// flood of chunks) skip forward to the target. Never backwards: a listener never hears a piece twice.
const TARGET_AHEAD_S = 0.5;
const CATCH_UP_ABOVE_S = 0.9;
const CATCH_UP_RATE = 1.1;
const JUMP_ABOVE_S = 2.0;
const KEEP_S = 20; // seconds of played audio kept in the buffer
const SEND_BUFFER_LIMIT = 64 * 1024; // the leader skips chunks while its socket has this much unsent

/** Offset of the first WebM Cluster element in `b` at or after `from`, or -1. */
export function findCluster(b, from = 0) {
  for (let i = from; i + 5 < b.length; i++) {
    if (b[i] !== 0x1f || b[i + 1] !== 0x43 || b[i + 2] !== 0xb6 || b[i + 3] !== 0x75) continue;
    const first = b[i + 4];
    if (!first) continue;
    const sizeLen = Math.clz32(first) - 23; // EBML variable-length integer: leading zero bits + 1
    if (b[i + 4 + sizeLen] === 0xe7) return i;
  }
  return -1;
}

function mediaSourceClass() {
  return globalThis.ManagedMediaSource || globalThis.MediaSource || null;
}

/** The citizen's player. `push(msg)` takes every `audio` message; `start()` (from a tap) begins playback. */
export class LivePlayer {
  static supported(mime = AUDIO_MIME) {
    const MS = mediaSourceClass();
    return !!MS && typeof MS.isTypeSupported === 'function' && MS.isTypeSupported(mime);
  }

  constructor(audio, { onChange = () => {} } = {}) {
    this.audio = audio;
    this.onChange = onChange;
    this.received = 0;
    this.appended = 0;
    this.inits = 0; // init chunks seen: a new recording (the leader started again, e.g. after a reconnect)
    // The last chunks' arrival: {n, at (ms since epoch), ahead (s of audio buffered ahead of the play head)}: a chunk
    // is heard about `ahead` after it arrived. For the glass-to-ear benchmark (loadtest/bench/glass_to_ear.py).
    this.timeline = [];
    this.lastChunkAt = 0;
    this.header = null; // the latest recording's WebM header
    this.mime = AUDIO_MIME;
    this.tail = null; // {n, data}: the Cluster part of an init chunk, appended if the next chunk follows it
    this.lastN = null;
    this.inSync = false; // the next in-order chunk continues what the SourceBuffer has
    this.active = false;
    this.ms = null;
    this.sb = null;
    this.ops = [];
    this.stalls = 0; // 'waiting' while playing: the buffer ran dry (the margin was too small for a late chunk)
    this.jumps = 0; // skips forward to the live edge
    this.audio.preservesPitch = true; // catching up at 1.1x must not raise the leader's voice
    this.audio.addEventListener('playing', () => this.onChange());
    this.audio.addEventListener('waiting', () => {
      if (this.active && this.audio.currentTime > 0) this.stalls += 1; // not the wait for the first chunk
      this.onChange();
    });
    // ~4 times a second while playing: the catch-up rate also goes back to 1.0 when no chunk arrives meanwhile.
    this.audio.addEventListener('timeupdate', () => this._followLiveEdge());
  }

  get onAir() {
    return Date.now() - this.lastChunkAt < 2000;
  }

  push(msg) {
    const data = msg.data instanceof Uint8Array ? msg.data : new Uint8Array(msg.data || []);
    if (!data.length) return;
    this.received += 1;
    this.lastChunkAt = Date.now();
    this._note(msg.n);
    const n = typeof msg.n === 'number' ? msg.n : null;
    if (msg.init) {
      this.inits += 1;
      const at = findCluster(data);
      this.header = at > 0 ? data.slice(0, at) : data.slice();
      this.tail = at > 0 ? { n, data: data.slice(at) } : null;
      if (msg.mime) this.mime = msg.mime;
      if (this.active) {
        this._op({ kind: 'header', data: this.header, mime: this.mime });
        this.inSync = true;
      }
    } else if (this.active) {
      const follows = n !== null && this.lastN !== null && n === this.lastN + 1;
      if (this.inSync && follows) {
        if (this.tail && this.tail.n === n - 1) this._op({ kind: 'append', data: this.tail.data });
        this._op({ kind: 'append', data });
      } else if (this.sb || this.ms) {
        const at = findCluster(data);
        this.inSync = at >= 0 && !!this.header;
        if (this.inSync) this._op({ kind: 'append', data: at ? data.subarray(at) : data });
      }
      this.tail = null;
    }
    this.lastN = n;
    this._stats();
    this.onChange();
  }

  _note(n) {
    if (!this.active || typeof n !== 'number') return;
    const b = this.audio.buffered;
    const ahead = b.length && !this.audio.paused ? Math.max(0, b.end(b.length - 1) - this.audio.currentTime) : null;
    this.timeline.push({ n, at: Date.now(), ahead });
    if (this.timeline.length > 600) this.timeline.splice(0, 100);
  }

  /** Begin playback (call from a user gesture so the browser allows sound). */
  start() {
    if (this.active) return;
    const MS = mediaSourceClass();
    if (!MS) return;
    this.active = true;
    this.inSync = false;
    this.ops = [];
    const ms = new MS();
    this.ms = ms;
    this.audio.disableRemotePlayback = true;
    this.audio.src = URL.createObjectURL(ms);
    ms.addEventListener(
      'sourceopen',
      () => {
        if (this.ms !== ms) return;
        try {
          this.sb = ms.addSourceBuffer(this.mime);
          this.sbMime = this.mime;
          this.sb.mode = 'sequence';
        } catch (e) {
          console.warn('audio: no SourceBuffer', e);
          this.stop();
          return;
        }
        this.sb.addEventListener('updateend', () => this._next());
        this.sb.addEventListener('error', () => this._restart('append error'));
        if (this.header) this.ops.unshift({ kind: 'header', data: this.header, mime: this.mime });
        this._next();
      },
      { once: true },
    );
    this.audio.play().catch((e) => console.warn('audio: play()', e.name));
    this.onChange();
  }

  stop() {
    this.active = false;
    this.inSync = false;
    this.ops = [];
    this.sb = null;
    this.ms = null;
    this.audio.pause();
    if (this.audio.src) URL.revokeObjectURL(this.audio.src);
    this.audio.removeAttribute('src');
    this.audio.load();
    this.onChange();
  }

  _restart(why) {
    console.warn('audio: restarting the player:', why);
    this.stop();
    this.start();
  }

  _op(op) {
    if (!this.active) return;
    this.ops.push(op);
    if (this.ops.length > 40) this.ops.splice(0, this.ops.length - 40); // never hoard on a stalled device
    this._next();
  }

  _next() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.ms || this.ms.readyState !== 'open') return;
    this._followLiveEdge();
    const op = this.ops.shift();
    if (!op) {
      this._trim();
      return;
    }
    try {
      if (op.kind === 'header') {
        sb.abort(); // a new recording: reset the parser (in sequence mode it continues at the group end)
        if (op.mime && op.mime !== this.sbMime && sb.changeType) {
          sb.changeType(op.mime);
          this.sbMime = op.mime;
        }
      } else {
        this.appended += 1;
      }
      sb.appendBuffer(op.data);
    } catch (e) {
      if (e.name === 'QuotaExceededError') {
        this.ops.unshift(op);
        this._trim(true);
      } else {
        this._restart(e.name);
      }
    }
    this._stats();
  }

  /** Keep the play head near the live edge: see TARGET_AHEAD_S. */
  _followLiveEdge() {
    const a = this.audio;
    if (!this.active) return;
    const b = a.buffered;
    if (!b.length) return this._rate(1);
    const end = b.end(b.length - 1);
    const ahead = end - a.currentTime;
    // A flood is appended one chunk at a time: skip only once it is all in, so the skip lands at the real live edge
    // (a skip decided halfway would leave the rest of the flood ahead again).
    if (ahead > JUMP_ABOVE_S && !this.ops.length && !this.sb?.updating) {
      const to = Math.max(b.start(b.length - 1), end - TARGET_AHEAD_S);
      if (to > a.currentTime) {
        a.currentTime = to; // forward only
        this.jumps += 1;
      }
      this._rate(1);
    } else if (ahead > CATCH_UP_ABOVE_S) {
      this._rate(CATCH_UP_RATE);
    } else if (ahead <= TARGET_AHEAD_S + 0.1) {
      this._rate(1); // near the target (hysteresis: between the two the rate stays as it is)
    }
  }

  _rate(r) {
    if (this.audio.playbackRate !== r) this.audio.playbackRate = r;
  }

  _trim(force = false) {
    const sb = this.sb;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const start = sb.buffered.start(0);
    const upTo = this.audio.currentTime - (force ? 2 : KEEP_S);
    if (upTo - start > (force ? 0.5 : 10)) sb.remove(start, upTo);
  }

  _stats() {
    this.audio.dataset.received = String(this.received);
    this.audio.dataset.appended = String(this.appended);
    this.audio.dataset.inits = String(this.inits);
    this.audio.dataset.stalls = String(this.stalls);
    this.audio.dataset.jumps = String(this.jumps);
  }

  /** 'off' | 'waiting' | 'playing' */
  get state() {
    if (!this.active) return 'off';
    const a = this.audio;
    return !a.paused && a.readyState >= 3 && this.onAir ? 'playing' : 'waiting';
  }
}

/** The leader's microphone: MediaRecorder in short chunks, each sent as an `audio` message. */
export class Broadcaster {
  static supported() {
    return !!(
      navigator.mediaDevices?.getUserMedia &&
      globalThis.MediaRecorder &&
      MediaRecorder.isTypeSupported(AUDIO_MIME)
    );
  }

  constructor(conn, { onChange = () => {} } = {}) {
    this.conn = conn;
    this.onChange = onChange;
    this.rec = null;
    this.stream = null;
    this.chunks = 0;
    this.bytes = 0;
    this.skipped = 0;
    this.recordings = 0; // recordings started (each begins with an init chunk)
    this.sentAt = []; // [chunk number, ms since epoch] of the last chunks sent (the glass-to-ear benchmark)
    this.chain = Promise.resolve();
    this.analyser = null;
    this.audioCtx = null;
  }

  get live() {
    return !!this.rec && this.rec.state === 'recording';
  }

  async start() {
    if (this.rec) return;
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    this._record();
    this._meter();
    this.onChange();
  }

  /**
   * A new recording on the same microphone, whose first chunk is an init chunk: after the connection came back (the
   * node the leader reaches now, and listeners who joined meanwhile, start from it), so on-air continues by itself.
   */
  restart() {
    if (!this.stream) return;
    const rec = this.rec;
    if (rec) {
      rec.onstop = null;
      rec.ondataavailable = null;
      if (rec.state !== 'inactive') rec.stop();
    }
    this.rec = null;
    this._record();
    this.onChange();
  }

  /** The microphone's level, 0..1 (RMS of the last few ms, scaled for speech), for the level meter. */
  level() {
    const an = this.analyser;
    if (!an) return 0;
    const buf = new Float32Array(an.fftSize);
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    return Math.min(1, Math.sqrt(sum / buf.length) * 4);
  }

  _meter() {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!Ctx || !this.stream) return;
    try {
      this.audioCtx = new Ctx();
      const analyser = this.audioCtx.createAnalyser();
      analyser.fftSize = 1024;
      this.audioCtx.createMediaStreamSource(this.stream).connect(analyser);
      this.analyser = analyser;
    } catch (e) {
      console.warn('audio: no level meter', e.name);
    }
  }

  _record() {
    this.recordings += 1;
    const rec = new MediaRecorder(this.stream, { mimeType: AUDIO_MIME, audioBitsPerSecond: BITRATE });
    let first = true;
    this.rec = rec;
    rec.ondataavailable = (e) => {
      if (!e.data || !e.data.size) return;
      const blob = e.data;
      // Keep chunks in order: arrayBuffer() resolves asynchronously.
      this.chain = this.chain.then(async () => {
        const data = new Uint8Array(await blob.arrayBuffer());
        const init = first;
        first = false;
        this._send(rec, data, init);
      });
    };
    rec.onstop = () => {
      if (this.rec === rec) this.rec = null;
      this.onChange();
    };
    rec.start(CHUNK_MS);
  }

  _send(rec, data, init) {
    const msg = init ? { t: 'audio', data, init: true, mime: AUDIO_MIME } : { t: 'audio', data };
    if (!init && this.conn.buffered() > SEND_BUFFER_LIMIT) {
      this.skipped += 1; // a slow uplink: listeners resume at the next Cluster
      return;
    }
    if (!this.conn.send(msg, { paced: false })) {
      if (init && this.rec === rec && rec.state === 'recording') {
        // The header never left: listeners cannot decode this recording. Start a new one when we can.
        rec.onstop = null;
        rec.stop();
        this.rec = null;
        setTimeout(() => this.stream && !this.rec && this._record(), 1000);
      }
      return;
    }
    this.chunks += 1;
    this.bytes += data.length;
    this.sentAt.push([this.chunks, Date.now()]);
    if (this.sentAt.length > 600) this.sentAt.splice(0, 100);
    this.onChange();
  }

  stop() {
    const rec = this.rec;
    if (rec && rec.state !== 'inactive') rec.stop(); // flushes the last chunk
    this.rec = null;
    const stream = this.stream;
    this.stream = null;
    this.analyser = null;
    this.audioCtx?.close().catch(() => {});
    this.audioCtx = null;
    // Release the microphone once the last chunk is out.
    this.chain = this.chain.then(() => stream?.getTracks().forEach((tr) => tr.stop()));
    this.onChange();
  }
}
