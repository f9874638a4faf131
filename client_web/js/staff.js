// Shared start-up of the leader and moderator consoles: token from the URL fragment, the connection, the header,
// the public questions and the speech stream.
import { Conn, RequestError, wsUrl } from './conn.js';
import { num, onLang, t } from './i18n.js';
import { $, closeReason, Header, newKey, params, QuestionsView, SpeechView } from './ui.js';

/**
 * Start a staff page. Returns {conn, header, questions, speech, act, state} or null when the link is incomplete.
 * `actions(q, act)` gives the buttons of a public question row.
 */
const RESEND_FOR_MS = 30000;
const RESEND_ON = new Set(['unavailable', 'internal', 'disconnected', 'no_answer']);
// A keyed request the node never answered (docs/protocol.md section 10.2: a client resends an unanswered id after a
// timeout of its own, with the same key) goes again after this long.
const ANSWER_WITHIN_MS = 10000;
// `rate_limited` means the node is there and says when it takes the message: wait `retry_ms` and send the same message
// (same key) again, for as long as this while it keeps saying so (a long pasted speech can meet it many times).
const LIMITED_FOR_MS = 120000;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
// The staff message rate this console keeps to: below the node's per-connection limit for staff (settings.py:
// staff_msgs_per_s 50, staff_msg_burst 200; docs/protocol.md), so a long speech is spread out instead of refused.
export const STAFF_RATE = { perSec: 40, burst: 150 };

export function startStaff(role, { actions, resume = true, helloExtra = null, onStatus = () => {} } = {}) {
  const header = new Header();
  const { th } = params();
  const token = staffToken(role, th);
  const state = { status: '', me: '' };
  if (!th || !token) {
    header.say('staff_link', null, 'error');
    return null;
  }

  const conn = new Conn({ th, getToken: async () => token, resume, helloExtra, rate: STAFF_RATE });
  const speech = new SpeechView($('#speech'), { empty: $('#speech-empty') });
  // The staff lane (docs/protocol.md section 1): its own handshake budget, so a citizen storm does not hold us up.
  conn.url = wsUrl() + '?lane=staff';

  /** Send a request from a button: disable it while in flight, show errors in the notice. Resolves to the ack. */
  async function act(msg, button) {
    if (button) button.disabled = true;
    try {
      return await conn.request(msg);
    } catch (err) {
      const what = msg.action ? `${msg.t} ${msg.action}` : msg.t;
      header.say('request_failed', { what, why: err.message }, 'error');
      return null;
    } finally {
      if (button) button.disabled = false;
      onStatus(state.status); // re-apply what the current status allows
    }
  }

  /**
   * Like act, for what must happen exactly once (a speech, an announcement): one idempotency key, resent while the
   * node answers `unavailable` / `internal` or the connection is down, for up to RESEND_FOR_MS, and after `retry_ms`
   * while it answers `rate_limited`, for up to LIMITED_FOR_MS. The node speaks a key once, so a resend after a lost
   * ack is answered `dup` with the first seq instead of being said twice.
   */
  // `key`: a caller that may send the same action again later (after a failure) passes the key it used, so the
  // node still says it once when the first send was stored and only its ack was lost.
  async function actOnce(msg, button, key = newKey()) {
    const keyed = { ...msg, key };
    const until = Date.now() + RESEND_FOR_MS;
    const limitedUntil = Date.now() + LIMITED_FOR_MS;
    if (button) button.disabled = true;
    try {
      for (;;) {
        try {
          return await answered(conn.request(keyed));
        } catch (err) {
          if (err.code === 'rate_limited' && Date.now() < limitedUntil) {
            // Not sooner than the node said (a token is free again then), and a little later so that the next
            // message finds one too.
            await sleep((err.retryMs || 1000) + Math.random() * 100);
            continue;
          }
          if (!RESEND_ON.has(err.code) || Date.now() > until) throw err;
          await sleep((err.retryMs || 1000) * (0.5 + Math.random()));
        }
      }
    } catch (err) {
      header.say('request_failed', { what: msg.t, why: err.message }, 'error');
      return null;
    } finally {
      if (button) button.disabled = false;
      onStatus(state.status);
    }
  }

  /** The request's answer, or a `no_answer` RequestError after ANSWER_WITHIN_MS. */
  function answered(request) {
    let timer = null;
    const late = new Promise((_, fail) => {
      timer = setTimeout(() => fail(new RequestError({ code: 'no_answer', msg: 'no answer from the node' })), ANSWER_WITHIN_MS);
    });
    return Promise.race([request, late]).finally(() => clearTimeout(timer));
  }

  const questions = new QuestionsView($('#questions'), {
    empty: $('#questions-empty'),
    count: $('#q-count'),
    actions: (q) => actions(q, act),
  });

  function setStatus(s) {
    state.status = s || state.status;
    header.setStatus(state.status);
    document.body.dataset.status = state.status;
    onStatus(state.status);
  }

  conn
    .on('state', (st) => {
      header.setConn(st);
      if (st === 'live' && header.notice.kind === 'error' && header.notice.key === 'disconnected') header.say('');
    })
    .on('closed', (code) => {
      if (code === 4005) {
        setStatus('ended');
        header.say('ended');
      } else header.say('disconnected', { why: closeReason(code) }, 'error');
    })
    .on('welcome', (w) => {
      state.me = w.sub;
      if (w.title) {
        $('#title').textContent = w.title;
        document.title = `${w.title} · ${t(`role_${role}`)}`;
      }
      if (w.role && w.role !== role && w.role !== 'admin') header.say('wrong_role', { role: w.role }, 'error');
      setStatus(w.status);
    })
    .on('snapshot', (s) => {
      setStatus(s.status);
      speech.load(s.speech);
      questions.load(s.questions);
      if (typeof s.viewers === 'number') header.setViewers(s.viewers, s.staff);
    })
    .on('speech', (ev) => speech.add(ev, 'speech'))
    .on('announce', (ev) => speech.add(ev, 'announce'))
    .on('status', (ev) => setStatus(ev.status))
    .on('question', (ev) => questions.upsert(ev.q))
    .on('votes', (ev) => questions.votes(ev.v))
    .on('viewers', (ev) => header.setViewers(ev.n, ev.staff));

  // Slow mode (leaders and moderators): one question per citizen every N seconds, 0 = off.
  const slow = $('#slow-mode');
  if (slow) {
    const labels = () => {
      for (const o of slow.options) if (o.value !== '0') o.textContent = t('slow_secs', { n: num(+o.value) });
    };
    const show = (n) => {
      if (typeof n !== 'number') return;
      if (![...slow.options].some((o) => +o.value === n)) slow.append(new Option('', String(n)));
      slow.value = String(n);
      labels();
    };
    labels();
    onLang(labels);
    conn.on('snapshot', (s) => show(s.slow_mode)).on('settings', (ev) => show(ev.slow_mode));
    slow.addEventListener('change', () => act({ t: 'slow_mode', seconds: +slow.value }, slow));
  }

  return { conn, header, questions, speech, act, actOnce, state };
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
