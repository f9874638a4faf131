// Citizen page: /?th=<town hall id>
import { Conn, newKey } from './conn.js';
import {
  $,
  el,
  params,
  QuestionsView,
  showConn,
  showNotice,
  showStatus,
  showViewers,
  SpeechView,
  stateLabel,
} from './ui.js';

const { th } = params();
const notice = $('#notice');
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
      /* storage disabled: this tab still works, a reload asks to join again */
    }
  },
};

const TOKEN_KEY = `jansamvad.token.${th}`;
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
  let ms;
  if (typeof expiresAt === 'number') ms = expiresAt < 1e12 ? expiresAt * 1000 : expiresAt;
  else ms = Date.parse(expiresAt);
  if (Number.isNaN(ms)) return false;
  return ms - Date.now() < 60_000;
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
    err.code = data && data.error;
    throw err;
  }
  return data;
}

async function join(name, region) {
  const body = { name, region: region || '', device_id: deviceId() };
  const res = await api('POST', `/api/townhalls/${encodeURIComponent(th)}/join`, body);
  const session = { token: res.token, sub: res.sub, name: res.name, expires_at: res.expires_at };
  store.set(TOKEN_KEY, session);
  store.set(PROFILE_KEY, { name, region: region || '' });
  return session;
}

// ---------------------------------------------------------------- page state

let session = null;
let conn = null;
let status = '';
const speech = new SpeechView($('#speech'));
let voted = new Set();
let mine = [];

const questions = new QuestionsView($('#questions'), {
  empty: $('#questions-empty'),
  actions: (q) => {
    const done = voted.has(q.qid);
    return [
      el(
        'button',
        {
          type: 'button',
          class: 'upvote',
          'aria-pressed': done ? 'true' : 'false',
          disabled: done || q.state === 'answered' || status === 'ended',
          onclick: () => upvote(q.qid),
        },
        done ? '✓ समर्थित ' : '▲ समर्थन ',
        el('small', { class: 'en', text: done ? '(upvoted)' : '(upvote)' }),
      ),
    ];
  },
});

function setStatus(s) {
  status = s || status;
  showStatus($('#status'), status);
  const ended = status === 'ended';
  $('#ask-text').disabled = ended;
  $('#ask-btn').disabled = ended;
  if (ended) showNotice(notice, 'यह जनसंवाद समाप्त हो गया है। (This town hall has ended.)', 'info');
}

function mineKey() {
  return `jansamvad.mine.${th}.${session.sub}`;
}

function saveMine() {
  store.set(mineKey(), mine.slice(-20));
}

const MINE_LABEL = {
  sending: 'भेजा जा रहा है… (sending…)',
  acked: 'प्राप्त ✓ (received ✓)',
  failed: 'नहीं भेजा गया (not sent)',
};

function renderMine() {
  $('#mine-title').hidden = mine.length === 0;
  $('#mine').replaceChildren(
    ...mine
      .slice()
      .reverse()
      .map((m) => {
        const pub = m.qid ? questions.get(m.qid) : null;
        const label = pub ? stateLabel(pub.state) : MINE_LABEL[m.status] || m.status;
        return el(
          'li',
          { class: `mine-item ${m.status}`, dataset: { key: m.key, status: pub ? pub.state : m.status } },
          el('span', { class: 'text', text: m.text }),
          el('span', { class: 'mstate', text: m.error ? `${label}: ${m.error}` : label }),
        );
      }),
  );
}

function upvote(qid) {
  if (!conn || voted.has(qid)) return;
  voted.add(qid);
  store.set(`jansamvad.voted.${th}.${session.sub}`, [...voted]);
  conn.enqueue({ t: 'upvote', qid });
  questions.render();
}

function onOutbox(item, st, msg) {
  const t = item.msg.t;
  if (t === 'ask') {
    const m = mine.find((x) => x.key === item.key);
    if (!m) return;
    m.status = st;
    if (st === 'acked' && msg) m.qid = msg.qid;
    if (st === 'failed' && msg) m.error = msg.msg || msg.code;
    saveMine();
    renderMine();
  } else if (t === 'upvote') {
    if (st === 'acked' && msg && typeof msg.votes === 'number') {
      const q = questions.get(item.msg.qid);
      if (q) questions.votes({ [item.msg.qid]: msg.votes });
    } else if (st === 'failed') {
      voted.delete(item.msg.qid);
      store.set(`jansamvad.voted.${th}.${session.sub}`, [...voted]);
      questions.render();
    }
  }
}

async function getToken() {
  if (session && !expired(session.expires_at)) return session.token;
  const profile = store.get(PROFILE_KEY);
  if (!profile || !profile.name) return null;
  session = await join(profile.name, profile.region);
  return session.token;
}

function startLive() {
  $('#join').hidden = true;
  $('#live').hidden = false;
  $('#me').textContent = session.name || '';
  voted = new Set(store.get(`jansamvad.voted.${th}.${session.sub}`, []));
  mine = store.get(mineKey(), []);
  renderMine();

  conn = new Conn({
    th,
    getToken,
    outboxKey: `jansamvad.outbox.${th}.${session.sub}`,
    onUnauthorized: async () => {
      store.set(TOKEN_KEY, null);
      session = null;
      const profile = store.get(PROFILE_KEY);
      if (!profile) return null;
      session = await join(profile.name, profile.region);
      return session.token;
    },
  });
  conn
    .on('state', (state, detail) => {
      showConn($('#conn'), state, detail);
      if (state === 'offline' && detail && detail !== 'no network' && status !== 'ended') showNotice(notice, `कनेक्शन बंद (Disconnected): ${detail}`, 'error');
      if (state === 'live' && notice.dataset.kind === 'error') showNotice(notice, '');
    })
    .on('closed', (code) => {
      if (code === 4001 || code === 4003) showJoin();
    })
    .on('welcome', (w) => {
      if (w.title) setTitle(w.title);
      setStatus(w.status);
    })
    .on('snapshot', (s) => {
      setStatus(s.status);
      speech.load(s.speech);
      questions.load(s.questions);
      if (typeof s.viewers === 'number') showViewers($('#viewers'), s.viewers);
      renderMine();
    })
    .on('speech', (ev) => speech.add(ev, 'speech'))
    .on('announce', (ev) => speech.add(ev, 'announce'))
    .on('status', (ev) => setStatus(ev.status))
    .on('question', (ev) => {
      questions.upsert(ev.q);
      renderMine();
    })
    .on('votes', (ev) => questions.votes(ev.v))
    .on('viewers', (ev) => showViewers($('#viewers'), ev.n))
    .on('outbox', onOutbox)
    .start();
}

function showJoin() {
  $('#live').hidden = true;
  $('#join').hidden = false;
  const profile = store.get(PROFILE_KEY);
  if (profile) {
    $('#name').value = profile.name || '';
    $('#region').value = profile.region || '';
  }
  $('#name').focus();
}

function setTitle(title) {
  $('#title').textContent = title;
  document.title = `${title} · जनसंवाद`;
}

// ---------------------------------------------------------------- wiring

$('#join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#name').value.trim();
  const region = $('#region').value.trim();
  if (!name) return;
  const btn = $('#join-btn');
  btn.disabled = true;
  try {
    session = await join(name, region);
    showNotice(notice, '');
    startLive();
  } catch (err) {
    showNotice(notice, `जुड़ नहीं सके (Could not join): ${err.message}`, 'error');
  } finally {
    btn.disabled = false;
  }
});

$('#ask-text').addEventListener('input', () => {
  $('#ask-count').textContent = `${$('#ask-text').value.length} / 300`;
});

$('#ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('#ask-text').value.trim();
  if (!text || !conn) return;
  const key = newKey();
  mine.push({ key, text, status: 'sending' });
  saveMine();
  renderMine();
  conn.enqueue({ t: 'ask', key, text });
  $('#ask-text').value = '';
  $('#ask-count').textContent = '0 / 300';
});

$('#leave').addEventListener('click', () => {
  if (conn) conn.stop();
  conn = null;
  store.set(TOKEN_KEY, null);
  session = null;
  showJoin();
});

async function main() {
  showConn($('#conn'), 'offline');
  if (!th) {
    showNotice(notice, 'पता अधूरा है: ?th=… नहीं मिला। (Missing town hall id in the link.)', 'error');
    return;
  }
  try {
    const info = await api('GET', `/api/townhalls/${encodeURIComponent(th)}`);
    setTitle(info.title || th);
    setStatus(info.status);
  } catch (err) {
    if (err.status === 404) {
      showNotice(notice, 'यह जनसंवाद नहीं मिला। (Town hall not found.)', 'error');
      return;
    }
    showNotice(notice, `सर्वर से संपर्क नहीं हो सका (Could not reach the server): ${err.message}`, 'error');
  }
  session = store.get(TOKEN_KEY);
  if (session && session.token && !expired(session.expires_at)) startLive();
  else {
    session = null;
    showJoin();
  }
}

main();
