// Citizen page: /?th=<town hall id>
//
// Offline-first: the identity (token, profile, device id), the outbox of questions and votes (each with its
// idempotency key), reactions made while offline (a bounded count), and what the page shows (speech, questions, the
// last seq applied) are kept in localStorage. A reload shows the saved state at once and resumes the stream with
// `last_seq`, so nothing is missed and nothing appears twice.
//
// What the first paint needs (this module, ui.js, i18n.js, hi.js, the CSS) loads first; the connection (conn.js and
// the msgpack build) and the audio player follow, so they do not compete for a slow link's bandwidth.
import { chosenUnit } from './regionpick.js';
import { Ladder } from './ladder.js';
import { chosen, getLang, num, onLang, setLang, t } from './i18n.js';
import {
  $,
  closeReason,
  el,
  Header,
  icon,
  newKey,
  params,
  pollBars,
  QuestionsView,
  REACTIONS,
  reactionEmoji,
  SpeechView,
  voteCount,
} from './ui.js';

const connModule = import('./conn.js');
const audioModule = connModule.then(() => import('./audio.js'));

/**
 * Fetch the wire codec (the msgpack build) now, because a connection is about to start: on joining, and on a return
 * visit with a session. conn.js asks for it only once it runs, so the preload lets both downloads share the link;
 * loadCodec() then runs it at once. Never on the bare join form: a preload that is not used within seconds of the
 * load event is a console warning, and a citizen who only looks at the form needs no codec.
 */
let codecFetched = false;
function fetchCodecNow() {
  if (codecFetched) return;
  codecFetched = true;
  if (new URLSearchParams(location.search).get('enc') !== 'json') {
    document.head.append(el('link', { rel: 'preload', as: 'script', href: '/vendor/msgpack.min.js' }));
  }
  connModule.then((m) => m.loadCodec()).catch(() => {}); // a failure is retried when the connection starts
}

const { th } = params();
const MAX_QUESTION = 300;
const MAX_OFFLINE_REACTIONS = 10; // reactions have no key or ack: keep a small count while offline, send it later
const REACT_WINDOW_MS = 2000;
const REACTS_PER_WINDOW = 4; // well under the node's 5 messages/s per citizen

const store = {
  get(key, fallback = null) {
    try {
      const v = localStorage.getItem(key);
      return v === null ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* storage disabled or full: this tab still works */
    }
  },
};

const TOKEN_KEY = `jansamvad.token.${th}`;
const INFO_KEY = `jansamvad.info.${th}`;
const PROFILE_KEY = 'jansamvad.profile';

function deviceId() {
  let id = store.get('jansamvad.device');
  if (!id) {
    id = 'd' + newKey();
    store.set('jansamvad.device', id);
  }
  return id;
}

/** expires_at may be unix seconds, milliseconds or an ISO string: true when it is (nearly) past. */
function expired(expiresAt) {
  if (expiresAt === undefined || expiresAt === null) return false;
  const ms = typeof expiresAt === 'number' ? (expiresAt < 1e12 ? expiresAt * 1000 : expiresAt) : Date.parse(expiresAt);
  return !Number.isNaN(ms) && ms - Date.now() < 60_000;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const err = new Error((data && (data.msg || data.error)) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

async function join(profile) {
  const body = { name: profile.name, region: profile.region || '', device_id: deviceId() };
  if (profile.unit) body.unit = profile.unit; // a region unit (join link or autocomplete): the token carries it
  const res = await api('POST', `/api/townhalls/${encodeURIComponent(th)}/join`, body);
  const s = { token: res.token, sub: res.sub, name: res.name, expires_at: res.expires_at };
  store.set(TOKEN_KEY, s);
  store.set(PROFILE_KEY, profile);
  return s;
}

// ---------------------------------------------------------------- page state

const header = new Header();
let session = null;
let conn = null;
let status = '';
let voted = new Set();
let votePending = new Set();
let own = new Set(); // qids of this citizen's own questions (from the `ask` acks): the node refuses upvoting them
let mine = [];
let reactionTotals = {};
let offlineReacts = {};
let recentReacts = [];
let saveTimer = null;
let polls = new Map(); // pid -> poll (open or closed)
let pollVotes = {}; // pid -> {option, status}: this device's votes
let slowMode = 0;

const speech = new SpeechView($('#speech'), { empty: $('#speech-empty') });
const questions = new QuestionsView($('#questions'), {
  empty: $('#questions-empty'),
  count: $('#q-count'),
  // One's own question has its vote count, not an upvote button (the node would answer `own_question`), and says so.
  badges: (q) => (own.has(q.qid) ? [el('span', { class: 'badge own', text: t('own_question') })] : []),
  lead: (q) => {
    if (own.has(q.qid)) return voteCount(q);
    const done = voted.has(q.qid);
    return el(
      'button',
      {
        type: 'button',
        class: `upvote votebox${votePending.has(q.qid) ? ' pending' : ''}`,
        'aria-pressed': done ? 'true' : 'false',
        'aria-label': `${t(done ? 'upvoted' : 'upvote_label')} (${t('votes', { n: q.votes || 0 })})`,
        title: t(done ? 'upvoted' : 'upvote'),
        disabled: q.state === 'answered' || status === 'ended' ? true : null,
        onclick: () => upvote(q.qid),
      },
      icon(done ? 'check' : 'up'),
      el('b', { text: num(q.votes || 0) }),
    );
  },
});
let player = null; // the LivePlayer, once audio.js is here
let pendingInit = null; // the latest init chunk that arrived before it
audioModule.then(({ LivePlayer }) => {
  player = new LivePlayer($('#player'), { onChange: renderAudio });
  globalThis.jansamvadDebug = { ...globalThis.jansamvadDebug, player }; // read by loadtest/bench/glass_to_ear.py
  player.supported = LivePlayer.supported();
  if (pendingInit) player.push(pendingInit);
  pendingInit = null;
  renderAudio();
}, () => {});

const stateKey = () => `jansamvad.state.${th}.${session.sub}`;
const mineKey = () => `jansamvad.mine.${th}.${session.sub}`;
const votedKey = () => `jansamvad.voted.${th}.${session.sub}`;
const ownKey = () => `jansamvad.own.${th}.${session.sub}`;
const reactKey = () => `jansamvad.reacts.${th}.${session.sub}`;
const outboxKey = () => `jansamvad.outbox.${th}.${session.sub}`;
const pollVotesKey = () => `jansamvad.pollvotes.${th}.${session.sub}`;

/** Questions and votes go through the outbox: the connection's once it exists, else straight into storage (the
 * connection picks them up when it starts). */
function queueAction(msg) {
  if (conn) {
    conn.enqueue(msg);
    return;
  }
  const item = { key: msg.key || newKey(), ts: Date.now() };
  item.msg = { ...msg, key: item.key };
  store.set(outboxKey(), [...store.get(outboxKey(), []), item]);
  onOutbox(item, 'queued');
}

/** Save what the page shows together with the seq it reflects (debounced; and when the page is hidden). */
function scheduleSave() {
  if (saveTimer) return;
  saveTimer = setTimeout(saveNow, 400);
}

function saveNow() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (!session || !conn || conn.lastSeq === null) return;
  store.set(stateKey(), {
    seq: conn.lastSeq,
    status,
    speech: speech.events.slice(-100),
    questions: questions.all(),
    reactions: reactionTotals,
    polls: [...polls.values()],
    slow_mode: slowMode,
  });
}

addEventListener('pagehide', saveNow);
document.addEventListener('visibilitychange', () => document.visibilityState === 'hidden' && saveNow());

function setStatus(s) {
  status = s || status;
  header.setStatus(status);
  const ended = status === 'ended';
  $('#ask-text').disabled = ended;
  $('#ask-btn').disabled = ended;
  for (const b of document.querySelectorAll('#reactions button')) b.disabled = ended;
  if (ended) {
    header.say('ended');
    if (player && player.active) player.stop(); // nothing more will be said
  }
  questions.render();
  renderPolls();
}

function setTitle(title) {
  if (!title) return;
  $('#title').textContent = title;
  document.title = `${title} · ${t('app')}`;
}

// ---------------------------------------------------------------- my questions and votes

function saveMine() {
  store.set(mineKey(), mine.slice(-20));
}

function renderMine() {
  $('#mine-box').hidden = mine.length === 0;
  $('#mine').replaceChildren(
    ...mine
      .slice()
      .reverse()
      .map((m) => {
        const pub = m.qid ? questions.get(m.qid) : null;
        const st = pub ? pub.state : m.status;
        const label = pub ? t(`q.${pub.state}`) : t(`out.${m.status}`);
        return el(
          'li',
          { class: `mine-item ${st}`, dataset: { key: m.key, status: st } },
          el('span', { class: 'text', text: m.text }),
          el('span', { class: 'mstate', text: m.error ? `${label}: ${m.error}` : label }),
        );
      }),
  );
}

function markOwn(qid) {
  if (!qid || own.has(qid)) return;
  own.add(qid);
  store.set(ownKey(), [...own]);
  questions.render();
}

function upvote(qid) {
  if (!session || voted.has(qid) || own.has(qid) || status === 'ended') return;
  voted.add(qid);
  votePending.add(qid);
  store.set(votedKey(), [...voted]);
  queueAction({ t: 'upvote', qid });
  questions.render();
}

function onOutbox(item, st, msg) {
  const kind = item.msg.t;
  if (kind === 'ask') {
    const m = mine.find((x) => x.key === item.key);
    if (!m || m.status === 'acked') return;
    m.status = st === 'acked' && msg && msg.state === 'rejected' ? 'refused' : st;
    if (st === 'acked' && msg) {
      m.qid = msg.qid;
      markOwn(msg.qid);
    }
    if (st === 'failed' && msg) m.error = msg.msg || msg.code;
    saveMine();
    renderMine();
  } else if (kind === 'poll_vote') {
    const v = pollVotes[item.msg.pid];
    if (!v || v.status === 'acked') return;
    v.status = st;
    store.set(pollVotesKey(), pollVotes);
    renderPolls();
  } else if (kind === 'upvote') {
    const qid = item.msg.qid;
    if (st === 'acked' || st === 'failed') votePending.delete(qid);
    else votePending.add(qid);
    if (st === 'acked' && msg && typeof msg.votes === 'number') questions.votes({ [qid]: msg.votes });
    if (st === 'failed') {
      voted.delete(qid);
      store.set(votedKey(), [...voted]);
      if (msg && msg.code === 'own_question') {
        // Asked from this identity on another device (or before this page kept the list): say so in words, and
        // the button goes.
        header.say('upvote_own', null, 'error');
        markOwn(qid);
      } else if (msg) header.say('upvote_failed', { why: msg.msg || msg.code }, 'error');
    }
    questions.render();
  }
}

// ---------------------------------------------------------------- polls

function loadPolls(list) {
  polls = new Map((list || []).map((p) => [p.pid, p]));
  renderPolls();
}

function renderPolls() {
  const all = [...polls.values()].sort((a, b) => (a.state === 'open' ? 0 : 1) - (b.state === 'open' ? 0 : 1));
  $('#polls').hidden = all.length === 0;
  $('#poll-list').replaceChildren(
    ...all.map((p) => {
      const vote = pollVotes[p.pid];
      const open = p.state === 'open';
      const canVote = open && !vote && status !== 'ended';
      return el(
        'div',
        { class: 'poll', dataset: { pid: p.pid, state: p.state } },
        el(
          'div',
          { class: 'poll-head' },
          el('p', { class: 'poll-q', text: p.question }),
          el('span', { class: `badge ${open ? 'live' : 'closed'}`, text: t(open ? 'poll_live' : 'poll_closed') }),
        ),
        canVote
          ? el(
              'div',
              { class: 'poll-options', role: 'group', 'aria-label': p.question },
              ...p.options.map((label, i) =>
                el('button', { type: 'button', class: 'poll-opt', dataset: { option: i }, onclick: () => pollVote(p.pid, i) }, label),
              ),
              el('p', { class: 'note', text: t('poll_vote_hint') }),
            )
          : pollBars(p, vote ? vote.option : null),
        vote ? el('p', { class: `pv-status ${vote.status}`, text: t(`pv.${vote.status}`) }) : null,
      );
    }),
  );
}

function pollVote(pid, option) {
  if (!session || pollVotes[pid]) return;
  pollVotes[pid] = { option, status: 'queued' };
  store.set(pollVotesKey(), pollVotes);
  queueAction({ t: 'poll_vote', pid, option });
  renderPolls();
}

function setSlowMode(n) {
  slowMode = typeof n === 'number' ? n : slowMode;
  const note = $('#slow-note');
  note.hidden = !slowMode;
  note.textContent = slowMode ? t('slow_mode_on', { n: num(slowMode) }) : '';
}

// ---------------------------------------------------------------- reactions

function renderReactions() {
  const row = $('#reactions');
  if (!row.childElementCount) {
    // Every reaction has its name in words: the emoji alone is an empty box on a device without an emoji font (and
    // is left out there), and a word says what it does in any case.
    for (const [kind, emoji] of REACTIONS) {
      row.append(
        el(
          'button',
          { type: 'button', class: 'react', dataset: { kind }, onclick: () => react(kind) },
          reactionEmoji(emoji),
          el('span', { class: 'rname' }),
          el('span', { class: 'rcount' }),
        ),
      );
    }
  }
  for (const b of row.children) {
    const kind = b.dataset.kind;
    const queued = offlineReacts[kind] || 0;
    $('.rcount', b).textContent = num(reactionTotals[kind] || 0) + (queued ? ` +${queued}` : '');
    $('.rname', b).textContent = t(`react.${kind}`);
    b.title = queued ? `${t(`react.${kind}`)} · ${t('react_queued')}` : t(`react.${kind}`);
    b.disabled = status === 'ended';
  }
}

function react(kind) {
  const btn = $(`#reactions [data-kind="${kind}"]`);
  btn.classList.remove('pop');
  void btn.offsetWidth; // restart the little animation
  btn.classList.add('pop');
  const now = Date.now();
  recentReacts = recentReacts.filter((ts) => now - ts < REACT_WINDOW_MS);
  if (recentReacts.length >= REACTS_PER_WINDOW) return; // enthusiastic tapping: count it once, not all
  recentReacts.push(now);
  if (conn && conn.send({ t: 'react', kind })) return;
  const total = Object.values(offlineReacts).reduce((a, b) => a + b, 0);
  if (total >= MAX_OFFLINE_REACTIONS) return;
  offlineReacts[kind] = (offlineReacts[kind] || 0) + 1;
  store.set(reactKey(), offlineReacts);
  renderReactions();
}

function flushOfflineReacts() {
  const queued = offlineReacts;
  offlineReacts = {};
  store.set(reactKey(), null);
  for (const [kind, n] of Object.entries(queued)) for (let i = 0; i < n; i++) conn.send({ t: 'react', kind });
  renderReactions();
}

// ---------------------------------------------------------------- live audio

function renderAudio() {
  const btn = $('#listen');
  const note = $('#audio-state');
  $('#onair').hidden = !player || !player.onAir;
  btn.disabled = !player || !player.supported || (status === 'ended' && !player.active);
  if (!player) return;
  if (!player.supported) {
    note.textContent = t('audio_unsupported');
    return;
  }
  const st = player.state;
  btn.setAttribute('aria-pressed', String(st !== 'off'));
  $('span[data-i18n]', btn).dataset.i18n = st === 'off' ? 'listen' : 'listen_stop';
  $('span[data-i18n]', btn).textContent = t(st === 'off' ? 'listen' : 'listen_stop');
  note.textContent =
    st === 'off' ? (player.onAir ? t('audio_on_air') : t('audio_off_air')) : st === 'playing' ? t('audio_playing') : t('audio_waiting');
}

$('#listen').addEventListener('click', () => {
  if (!player || !ladder) return;
  if (ladder.mode === 'audio') ladder.choose('captions');
  else {
    player.start(); // in the tap itself: the browser lets a user gesture start sound
    ladder.choose('audio');
  }
  renderAudio();
});

// ---------------------------------------------------------------- the data ladder

let ladder = null; // the Ladder (ladder.js), once the connection exists

function onLadder(mode, detail) {
  if (player) {
    if (mode === 'audio' && !player.active && detail.changed) player.start();
    else if (mode !== 'audio' && player.active) player.stop();
  }
  for (const b of document.querySelectorAll('#ladder button')) b.setAttribute('aria-checked', String(b.dataset.mode === mode));
  document.body.dataset.mode = mode;
  const note = $('#ladder-note');
  const name = t(`mode.${mode}`);
  if (detail.changed && detail.why.startsWith('congested')) note.textContent = t('ladder_down', { mode: name });
  else if (detail.changed && detail.why === 'calm') note.textContent = t('ladder_up', { mode: name });
  else if (detail.changed && detail.why === 'tap') note.textContent = '';
  if (ladder && typeof ladder.kbps === 'number') note.dataset.kbps = ladder.kbps.toFixed(1);
  if (ladder && typeof ladder.rttMs === 'number') note.dataset.rtt = String(ladder.rttMs);
  renderAudio();
}

for (const b of document.querySelectorAll('#ladder button')) {
  b.addEventListener('click', () => {
    if (!ladder) return;
    if (b.dataset.mode === 'audio' && player) player.start(); // in the tap: sound may start
    ladder.choose(b.dataset.mode);
  });
}
setInterval(() => {
  if (!$('#live').hidden) renderAudio();
}, 1000);

// ---------------------------------------------------------------- connection

async function getToken() {
  if (session && !expired(session.expires_at)) return session.token;
  const profile = store.get(PROFILE_KEY);
  if (!profile || !profile.name) return null;
  session = await join(profile);
  return session.token;
}

async function startLive() {
  fetchCodecNow();
  document.body.dataset.phase = 'live';
  $('#join').hidden = true;
  $('#live').hidden = false;
  $('#me').textContent = t('you_are', { name: session.name || '' });
  voted = new Set(store.get(votedKey(), []));
  votePending = new Set();
  mine = store.get(mineKey(), []);
  own = new Set([...store.get(ownKey(), []), ...mine.map((m) => m.qid).filter(Boolean)]);
  offlineReacts = store.get(reactKey(), {}) || {};
  pollVotes = store.get(pollVotesKey(), {}) || {};

  // Show at once what this device saw last time; the stream resumes right after it.
  const saved = store.get(stateKey());
  if (saved && typeof saved.seq === 'number') {
    speech.load(saved.speech);
    questions.load(saved.questions);
    reactionTotals = saved.reactions || {};
    loadPolls(saved.polls);
    setSlowMode(saved.slow_mode || 0);
    setStatus(saved.status);
  }
  renderMine();
  renderReactions();
  renderAudio();
  for (const item of store.get(outboxKey(), [])) onOutbox(item, 'queued');

  const { Conn } = await connModule;
  if (!session || conn) return; // left, or started twice, while the module loaded
  conn = new Conn({
    th,
    getToken,
    lastSeq: saved && typeof saved.seq === 'number' ? saved.seq : null,
    outboxKey: outboxKey(),
    rate: { perSec: 4, burst: 12 },
    helloFields: () => (ladder ? ladder.helloFields() : {}),
    onUnauthorized: async () => {
      store.set(TOKEN_KEY, null);
      session = null;
      const profile = store.get(PROFILE_KEY);
      if (!profile) return null;
      session = await join(profile);
      return session.token;
    },
  });
  conn
    .on('state', (state) => {
      header.setConn(state);
      if (state === 'live' && header.notice.kind === 'error') header.say('');
    })
    .on('closed', (code) => {
      if (code === 4005) setStatus('ended');
      else if (code === 4004) header.say('th_not_found', null, 'error');
      else if (code === 4001 || code === 4003) {
        header.say('disconnected', { why: closeReason(code) }, 'error');
        store.set(TOKEN_KEY, null);
        showJoin();
      } else header.say('disconnected', { why: closeReason(code) }, 'error');
    })
    .on('welcome', (w) => {
      setTitle(w.title);
      store.set(INFO_KEY, { title: w.title });
      setStatus(w.status);
      if (Object.keys(offlineReacts).length) flushOfflineReacts();
    })
    .on('snapshot', (s) => {
      setStatus(s.status);
      speech.load(s.speech);
      questions.load(s.questions);
      if (typeof s.viewers === 'number') header.setViewers(s.viewers);
      if (s.reactions && typeof s.reactions === 'object') {
        reactionTotals = { ...s.reactions };
        renderReactions();
      }
      loadPolls(s.polls);
      setSlowMode(s.slow_mode || 0);
      renderMine();
      scheduleSave();
    })
    .on('speech', (ev) => {
      speech.add(ev, 'speech');
      scheduleSave();
    })
    .on('announce', (ev) => {
      speech.add(ev, 'announce');
      scheduleSave();
    })
    .on('status', (ev) => {
      setStatus(ev.status);
      scheduleSave();
    })
    .on('question', (ev) => {
      questions.upsert(ev.q);
      renderMine();
      scheduleSave();
    })
    .on('poll', (ev) => {
      polls.set(ev.p.pid, ev.p);
      renderPolls();
      scheduleSave();
    })
    .on('poll_counts', (ev) => {
      const p = polls.get(ev.pid);
      if (p && Array.isArray(ev.c)) {
        p.counts = ev.c;
        renderPolls();
      }
    })
    .on('settings', (ev) => {
      setSlowMode(ev.slow_mode);
      scheduleSave();
    })
    .on('votes', (ev) => questions.votes(ev.v))
    .on('viewers', (ev) => header.setViewers(ev.n))
    .on('reactions', (ev) => {
      reactionTotals = { ...reactionTotals, ...ev.c };
      renderReactions();
    })
    .on('audio', (ev) => {
      if (player) player.push(ev);
      else if (ev.init) pendingInit = ev;
    })
    .on('outbox', onOutbox);
  ladder?.stop();
  ladder = new Ladder(conn, { onChange: onLadder });
  onLadder(ladder.mode, { why: 'start', changed: true });
  conn.start();
}

function showJoin() {
  document.body.dataset.phase = 'join';
  $('#live').hidden = true;
  $('#join').hidden = false;
  const profile = store.get(PROFILE_KEY);
  if (profile) {
    $('#name').value = profile.name || '';
    $('#district').value = profile.district || '';
    $('#constituency').value = profile.constituency || '';
  }
}

// ---------------------------------------------------------------- wiring

$('#join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#name').value.trim();
  if (!name) return;
  const district = $('#district').value.trim();
  const constituency = $('#constituency').value.trim();
  const region = [district, constituency].filter(Boolean).join(', ').slice(0, 40);
  const btn = $('#join-btn');
  btn.disabled = true;
  $('span', btn).textContent = t('joining');
  fetchCodecNow(); // alongside the join request
  try {
    session = await join({ name, region, district, constituency, unit: chosenUnit() });
    header.say('');
    startLive();
  } catch (err) {
    header.say('join_failed', { why: err.status ? err.message : t('unreachable') }, 'error');
  } finally {
    btn.disabled = false;
    $('span', btn).textContent = t('join_btn');
  }
});

const askText = $('#ask-text');
const askCount = () => {
  $('#ask-count').textContent = t('ask_count', { n: num(askText.value.length), max: num(MAX_QUESTION) });
};
askText.maxLength = MAX_QUESTION;
askText.addEventListener('input', askCount);
askText.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    $('#ask-form').requestSubmit();
  }
});

$('#ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = askText.value.trim();
  if (!text || !session || status === 'ended') return;
  const key = newKey();
  mine.push({ key, text, status: 'queued' });
  saveMine();
  renderMine();
  queueAction({ t: 'ask', key, text });
  askText.value = '';
  askCount();
});

$('#leave').addEventListener('click', () => {
  ladder?.stop();
  ladder = null;
  if (conn) conn.stop();
  player?.stop();
  conn = null;
  store.set(TOKEN_KEY, null);
  session = null;
  showJoin();
});

onLang(() => {
  askCount();
  renderPolls();
  setSlowMode();
  renderMine();
  renderReactions();
  renderAudio();
  if (session) $('#me').textContent = t('you_are', { name: session.name || '' });
  const title = $('#title').textContent;
  if (title) document.title = `${title} · ${t('app')}`;
});

async function main() {
  askCount();
  if (!th) {
    header.say('missing_th', null, 'error');
    return;
  }
  setTitle((store.get(INFO_KEY) || {}).title);
  session = store.get(TOKEN_KEY);
  const returning = session && session.token && !expired(session.expires_at);
  if (returning) startLive();
  else {
    session = null;
    showJoin();
  }
  // Public facts of the town hall, in parallel: the title, its status and its language.
  try {
    const info = await api('GET', `/api/townhalls/${encodeURIComponent(th)}`);
    setTitle(info.title);
    store.set(INFO_KEY, { title: info.title });
    if (!conn) setStatus(info.status);
    if (!chosen() && info.lang && info.lang !== getLang()) setLang(info.lang);
    if (info.status === 'ended' && !returning) {
      $('#join').hidden = true;
      header.say('ended');
    }
  } catch (err) {
    if (err.status === 404) {
      $('#join').hidden = true;
      $('#live').hidden = true;
      conn?.stop();
      header.say('th_not_found', null, 'error');
    } else if (!returning) header.say('unreachable', null, 'error');
  }
}

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  // The app shell (this page, its scripts and styles) from the cache when the network is gone: a reload offline
  // still shows the saved state and the questions waiting in the outbox.
  addEventListener('load', () => navigator.serviceWorker.register('/sw.js').catch(() => {}));
}

main();
