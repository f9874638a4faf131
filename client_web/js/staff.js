// Shared start-up of the leader and moderator pages: token from the URL fragment, the connection, the header.
import { Conn } from './conn.js';
import { $, params, QuestionsView, showConn, showNotice, showStatus, showViewers, SpeechView } from './ui.js';

/**
 * Start a staff page. Returns {conn, questions, speech, notice, act(msg, button)}.
 * `actions(q, act)` gives the buttons of a public question row.
 */
export function startStaff(role, { actions, resume = true, onStatus = () => {} } = {}) {
  const { th } = params();
  const token = staffToken(role, th);
  const notice = $('#notice');
  const speech = new SpeechView($('#speech'));
  const state = { status: '' };

  showConn($('#conn'), 'offline');
  if (!th || !token) {
    showNotice(notice, `लिंक अधूरा है (The link needs ?th=… and #token=…).`, 'error');
    return null;
  }

  const conn = new Conn({ th, getToken: async () => token, resume });

  /** Send a request from a button: disable it while in flight, show errors in the notice. */
  async function act(msg, button) {
    if (button) button.disabled = true;
    try {
      const ack = await conn.request(msg);
      return ack;
    } catch (err) {
      showNotice(notice, `${msg.t}${msg.action ? ' ' + msg.action : ''}: ${err.message}`, 'error');
      delete notice.dataset.source;
      return null;
    } finally {
      if (button) button.disabled = false;
      onStatus(state.status); // re-apply what the current status allows
    }
  }

  const questions = new QuestionsView($('#questions'), {
    empty: $('#questions-empty'),
    actions: (q) => actions(q, act),
  });

  function setStatus(s) {
    state.status = s || state.status;
    showStatus($('#status'), state.status);
    document.body.dataset.status = state.status;
    onStatus(state.status);
  }

  conn
    .on('state', (st, detail) => {
      showConn($('#conn'), st, detail);
      if (st === 'offline' && state.status === 'ended') {
        showNotice(notice, 'यह जनसंवाद समाप्त हो गया है। (This town hall has ended.)', 'info');
      } else if (st === 'offline' && detail && detail !== 'no network') {
        showNotice(notice, `कनेक्शन बंद (Disconnected): ${detail}`, 'error');
        notice.dataset.source = 'conn';
      }
      if (st === 'live' && notice.dataset.source === 'conn') {
        showNotice(notice, '');
        delete notice.dataset.source;
      }
    })
    .on('welcome', (w) => {
      if (w.title) {
        $('#title').textContent = w.title;
        document.title = `${w.title} · ${role}`;
      }
      if (w.role && w.role !== role && w.role !== 'admin') {
        showNotice(notice, `This link is for role ${w.role}, not ${role}.`, 'error');
      }
      setStatus(w.status);
    })
    .on('snapshot', (s) => {
      setStatus(s.status);
      speech.load(s.speech);
      questions.load(s.questions);
      if (typeof s.viewers === 'number') showViewers($('#viewers'), s.viewers);
    })
    .on('speech', (ev) => speech.add(ev, 'speech'))
    .on('announce', (ev) => speech.add(ev, 'announce'))
    .on('status', (ev) => setStatus(ev.status))
    .on('question', (ev) => questions.upsert(ev.q))
    .on('votes', (ev) => questions.votes(ev.v))
    .on('viewers', (ev) => showViewers($('#viewers'), ev.n));

  return { conn, questions, speech, notice, act, state };
}

function staffToken(role, th) {
  // The token travels in the URL fragment (never sent to a server). Keep it for reloads in sessionStorage
  // and take it out of the address bar so it is not copied along with the link.
  const key = `jansamvad.${role}.${th}`;
  const { hashToken } = params();
  if (hashToken) {
    try {
      sessionStorage.setItem(key, hashToken);
    } catch {
      /* storage disabled */
    }
    history.replaceState(null, '', location.pathname + location.search);
    return hashToken;
  }
  try {
    return sessionStorage.getItem(key) || '';
  } catch {
    return '';
  }
}
