// Booth screen: /screen.html?th=<town hall id>&unit=<unit code>#token=<screen token> (or /screen/<unit>?th=<id>,
// which redirects here and keeps the fragment). For an LED screen or a smart TV at a booth: big Hindi captions, the
// question being answered, the poll, a QR code to join from a phone, live audio; the volunteer sets how many people
// watch with the remote's arrow keys and OK, and the node adds them to the roll-up as "people reached"
// (docs/protocol.md, `audience`).
//
// It runs for hours untouched: it reconnects by itself (conn.js: backoff with jitter, resume with last_seq), never
// opens a dialog, keeps the screen awake where the browser lets it, and holds a bounded amount of state (a few
// caption lines, the pinned questions, the latest polls), so memory does not grow with the length of the town hall.
// Audio is opt-in on the wire: every hello of the page asks for mode `audio`.
import { $, el, params, pollBars } from './ui.js';
import { num } from './i18n.js';

const FINALS_SHOWN = 3; // final sentences on screen, newest last
const PINNED_KEPT = 20;
const POLLS_KEPT = 5;
const SEND_AFTER_MS = 800; // the count goes out once the volunteer stops pressing
const MAX_PEOPLE = 50000; // the node's limit (SCREEN_AUDIENCE_MAX)

const { th, hashToken } = params();
const unit = new URLSearchParams(location.search).get('unit') || '';
const TOKEN_KEY = `jansamvad.screen.${th}.${unit}`;
const PEOPLE_KEY = `jansamvad.screen.people.${th}.${unit}`;

const store = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      /* storage disabled: the screen still works until a reload */
    }
  },
};

// The token stays in the fragment (never sent to a server); a TV that restarts its browser finds it in storage.
if (hashToken) {
  store.set(TOKEN_KEY, hashToken);
  history.replaceState(null, '', location.pathname + location.search);
}
const token = hashToken || store.get(TOKEN_KEY) || '';

// Plain ES2017 and DOM APIs an older TV browser has (no `?.`, `??` or replaceChildren in this file).
function fill(parent, ...children) {
  parent.textContent = '';
  for (const child of children) parent.appendChild(child);
}

function say(text) {
  const notice = $('#notice');
  notice.textContent = text;
  notice.hidden = !text;
}

// ---------------------------------------------------------------- captions

let finals = []; // {seq, text}: the last FINALS_SHOWN final sentences
let partial = '';
let announcement = '';

function renderCaptions() {
  fill($('#finals'), ...finals.map((f) => el('li', { dataset: { seq: f.seq == null ? '' : f.seq }, text: f.text })));
  $('#partial').textContent = partial;
  const box = $('#announce');
  box.textContent = announcement;
  box.hidden = !announcement;
  $('#waiting').hidden = finals.length > 0 || !!partial || status === 'live';
}

function addSpeech(ev) {
  if (ev.t === 'announce') {
    announcement = ev.text;
  } else if (ev.final === false) {
    partial = ev.text;
  } else {
    partial = '';
    finals.push({ seq: ev.seq, text: ev.text });
    if (finals.length > FINALS_SHOWN) finals = finals.slice(-FINALS_SHOWN);
  }
}

// ---------------------------------------------------------------- status, question, poll

let status = '';
const STATUS_TEXT = { scheduled: 'जल्द शुरू होगा', live: '● लाइव', ended: 'समाप्त' };

function setStatus(next) {
  if (!next) return;
  status = next;
  const badge = $('#status');
  badge.dataset.status = next;
  badge.textContent = STATUS_TEXT[next] || next;
  renderCaptions();
}

const pinned = new Map(); // qid -> question, in pin order (the newest is the one being answered)
let answered = null; // the question marked answered last

function upsertQuestion(q) {
  pinned.delete(q.qid);
  if (q.pinned && q.state !== 'rejected') pinned.set(q.qid, q);
  while (pinned.size > PINNED_KEPT) pinned.delete(pinned.keys().next().value);
  if (q.state === 'answered') answered = q;
  else if (answered && answered.qid === q.qid) answered = null;
}

function renderNow() {
  const q = [...pinned.values()].pop() || answered;
  $('#now').hidden = !q;
  if (!q) return;
  $('#now-text').textContent = q.text;
  $('#now-who').textContent = [q.name, q.region].filter(Boolean).join(' · ');
}

const polls = new Map(); // pid -> poll, the latest POLLS_KEPT

function upsertPoll(p) {
  polls.delete(p.pid);
  polls.set(p.pid, p);
  while (polls.size > POLLS_KEPT) polls.delete(polls.keys().next().value);
}

function renderPoll() {
  const all = [...polls.values()];
  const p = all.filter((x) => x.state === 'open').pop() || all.pop();
  $('#poll').hidden = !p;
  if (!p) return;
  $('#poll').dataset.pid = p.pid;
  $('#poll-q').textContent = p.question;
  fill($('#poll-bars'), pollBars(p));
}

// ---------------------------------------------------------------- people watching (the volunteer's remote)

let people = Math.min(MAX_PEOPLE, Math.max(0, parseInt(store.get(PEOPLE_KEY) || '0', 10) || 0));
let sentPeople = null; // what the node acknowledged on this connection
let sendTimer = null;
let conn = null;

function renderPeople() {
  $('#people').textContent = num(people);
  $('#people').dataset.people = String(people);
}

function setSent(state) {
  const sent = $('#sent');
  sent.dataset.state = state;
  sent.textContent = state === 'sent' ? '✓ भेजा गया' : state === 'sending' ? 'भेज रहे हैं…' : '';
}

async function sendPeople() {
  clearTimeout(sendTimer);
  sendTimer = null;
  if (!conn || conn.state !== 'live' || people === sentPeople) return;
  const value = people;
  setSent('sending');
  try {
    await conn.request({ t: 'audience', people: value });
    sentPeople = value;
    setSent(people === value ? 'sent' : 'sending');
    if (people !== value) schedulePeople();
  } catch {
    setSent('idle'); // not connected, or refused: sent again after the next welcome
  }
}

function schedulePeople() {
  clearTimeout(sendTimer);
  sendTimer = setTimeout(sendPeople, SEND_AFTER_MS);
}

function step(by) {
  people = Math.min(MAX_PEOPLE, Math.max(0, people + by));
  store.set(PEOPLE_KEY, String(people));
  renderPeople();
  setSent('sending');
  schedulePeople();
}

// Remote control: the arrow keys move between the buttons, OK (Enter) presses the one in focus. Nothing needs typing.
const remoteButtons = () => [...document.querySelectorAll('[data-remote]')];

document.addEventListener('keydown', (e) => {
  const keys = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 };
  if (!(e.key in keys)) return;
  e.preventDefault();
  const buttons = remoteButtons();
  const at = buttons.indexOf(document.activeElement);
  const next = at < 0 ? buttons.indexOf($('#more')) : (at + keys[e.key] + buttons.length) % buttons.length;
  buttons[next].focus();
});

for (const button of document.querySelectorAll('[data-step]')) {
  button.addEventListener('click', () => step(parseInt(button.dataset.step, 10)));
}

// ---------------------------------------------------------------- live audio

let player = null;
let pendingInit = null;

function renderSound() {
  const button = $('#sound');
  const playing = !!player && player.active && !player.audio.paused;
  button.setAttribute('aria-pressed', String(playing));
  $('span', button).textContent = playing ? 'आवाज़ बंद करें' : 'आवाज़ चालू करें';
  button.disabled = !!player && !player.supported;
}

$('#sound').addEventListener('click', () => {
  if (!player || !player.supported) return;
  if (player.active && player.audio.paused) player.audio.play().catch(() => {});
  else if (player.active) player.stop();
  else player.start();
  renderSound();
});

import('./audio.js').then(
  ({ LivePlayer }) => {
    player = new LivePlayer($('#player'), { onChange: renderSound });
    player.supported = LivePlayer.supported();
    if (pendingInit) player.push(pendingInit);
    pendingInit = null;
    // Sound on from the start where the browser allows it; otherwise OK on the sound button starts it.
    if (player.supported) player.start();
    renderSound();
  },
  () => {},
);

// ---------------------------------------------------------------- keep the screen on

let wakeLock = null;
async function keepAwake() {
  if (!navigator.wakeLock || wakeLock || document.visibilityState !== 'visible') return;
  try {
    wakeLock = await navigator.wakeLock.request('screen');
    wakeLock.addEventListener('release', () => {
      wakeLock = null;
    });
  } catch {
    wakeLock = null; // not allowed here (no secure context, a TV browser without it): the TV's own settings apply
  }
}
document.addEventListener('visibilitychange', keepAwake);

// ---------------------------------------------------------------- the unit and its join link

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(String(response.status));
  return response.json();
}

async function showUnit() {
  const q = `th=${encodeURIComponent(th)}`;
  $('#qr').src = `/api/regions/${encodeURIComponent(unit)}/qr.png?${q}`;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const link = await getJSON(`/api/regions/${encodeURIComponent(unit)}/link?${q}`);
      $('#unit').textContent = [link.unit.name_hi, link.unit.name_en].filter(Boolean).join(' · ');
      $('#join-url').textContent = link.url;
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, Math.min(30000, 1000 * 2 ** attempt)));
    }
  }
}

// ---------------------------------------------------------------- the connection

const CONN_TEXT = {
  connecting: 'जुड़ रहे हैं…',
  live: 'जुड़े हैं',
  reconnecting: 'फिर से जुड़ रहे हैं…',
  offline: 'ऑफ़लाइन',
  ended: 'प्रसारण समाप्त',
};

async function main() {
  renderPeople();
  renderCaptions();
  $('#more').focus();
  keepAwake();
  if (!th || !unit || !token) {
    say('लिंक अधूरा है: ?th=…, unit और #token=… चाहिए · The link needs th, unit and a screen token.');
    return;
  }
  showUnit();
  const { Conn } = await import('./conn.js');
  conn = new Conn({
    th,
    getToken: async () => token,
    rate: { perSec: 2, burst: 6 },
    // Audio is opt-in (docs/protocol.md 4.2): a screen is there to be heard, so every hello asks for it, unless this
    // browser cannot play it. The node sends the recording's init chunk with the join, then the live chunks.
    helloFields: () => ({ mode: player && !player.supported ? 'captions' : 'audio' }),
  });
  conn
    .on('state', (state) => {
      const badge = $('#conn');
      badge.dataset.state = state;
      $('.label', badge).textContent = CONN_TEXT[state] || state;
      if (state !== 'live') sentPeople = null; // a new session: the node knows nothing of this screen yet
    })
    .on('closed', (code) => {
      if (code === 4005) setStatus('ended');
      else if (code === 4001 || code === 4003) say('यह स्क्रीन लिंक अब मान्य नहीं है · This screen link is no longer valid.');
      else if (code === 4004) say('यह जनसंवाद नहीं मिला · Town hall not found.');
    })
    .on('welcome', (w) => {
      $('#title').textContent = w.title;
      document.title = `${w.title} · जनसंवाद`;
      setStatus(w.status);
      say('');
      sendPeople();
    })
    .on('snapshot', (s) => {
      finals = [];
      partial = '';
      announcement = '';
      for (const ev of s.speech || []) addSpeech(ev);
      pinned.clear();
      answered = null;
      for (const q of s.questions || []) upsertQuestion(q);
      polls.clear();
      for (const p of s.polls || []) upsertPoll(p);
      if (typeof s.viewers === 'number') $('#viewers').textContent = num(s.viewers);
      setStatus(s.status);
      renderNow();
      renderPoll();
    })
    .on('speech', (ev) => {
      addSpeech({ ...ev, t: 'speech' });
      renderCaptions();
    })
    .on('announce', (ev) => {
      addSpeech({ ...ev, t: 'announce' });
      renderCaptions();
    })
    .on('status', (ev) => setStatus(ev.status))
    .on('question', (ev) => {
      upsertQuestion(ev.q);
      renderNow();
    })
    .on('poll', (ev) => {
      upsertPoll(ev.p);
      renderPoll();
    })
    .on('poll_counts', (ev) => {
      const p = polls.get(ev.pid);
      if (p && Array.isArray(ev.c)) {
        p.counts = ev.c;
        renderPoll();
      }
    })
    .on('viewers', (ev) => {
      $('#viewers').textContent = num(ev.n);
    })
    .on('audio', (ev) => {
      if (player) player.push(ev);
      else if (ev.init) pendingInit = ev;
    })
    .start();
}

main();
