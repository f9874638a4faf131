// Leader console: /leader.html?th=<id>#token=<leader token>
// Go live / end, speech segments (typed, pasted or dictated), push-to-talk audio, announcements, the approved
// questions by votes (answer, pin), their themes (near-duplicate groups) by summed votes, and audience figures.
import { Broadcaster } from './audio.js';
import { getLang, num, onLang, t } from './i18n.js';
import { startStaff } from './staff.js';
import { $, button, el, newKey, pollBars, REACTIONS, reactionEmoji } from './ui.js';

const SPEECH_MAX = 2000;

let page = null;
let status = '';
let mic = null;
let onAir = false; // the continuous on-air mode (besides push-to-talk): the microphone stays on across drops
let connState = '';
// A text being sent part by part (speech, announce): its send button stays off until the last part is answered, so
// a second press cannot send the same text again under new keys.
const busy = { speech: false, announce: false };
let renderPolls = () => {};

function onStatus(s) {
  const was = status;
  status = s;
  // Offer only what applies: go live from scheduled, end while not ended, speak while live. Once ended, the controls
  // that act on the town hall (going live, ending, speech, microphone, polls, slow mode) are gone, not just grey
  // (body[data-status="ended"] .while-open in console.css).
  $('#go-live').disabled = s !== 'scheduled';
  $('#end').disabled = s === 'ended' || !s;
  const live = s === 'live';
  for (const id of ['#mic', '#stt']) $(id).disabled = !live;
  $('#speech-send').disabled = !live || busy.speech;
  $('#announce-send').disabled = !live || busy.announce;
  $('#poll-open').disabled = s === 'ended' || !s;
  if (!live && mic && mic.live) stopMic();
  if (!live) onAir = false;
  if (s === 'ended' && was !== 'ended') renderPolls();
}

page = startStaff('leader', {
  onStatus,
  actions: (q, act) => {
    const m = (action) => (e) => act({ t: 'moderate', qid: q.qid, action }, e.currentTarget);
    const out = [];
    if (q.state === 'approved') out.push(button('answer ok', 'mark_answered', m('answer'), 'check'));
    out.push(q.pinned ? button('unpin', 'unpin', m('unpin'), 'pin') : button('pin', 'pin', m('pin'), 'pin'));
    return out;
  },
});

/** Long pasted text becomes several segments, cut at sentence ends (। . ? !) where possible. */
export function segments(text, max = SPEECH_MAX) {
  const out = [];
  let rest = text.trim();
  while (rest.length > max) {
    const window = rest.slice(0, max);
    let cut = Math.max(...['।', '.', '?', '!', '\n'].map((c) => window.lastIndexOf(c)));
    if (cut < max / 2) cut = window.lastIndexOf(' ');
    if (cut < max / 2) cut = max - 1;
    out.push(rest.slice(0, cut + 1).trim());
    rest = rest.slice(cut + 1).trim();
  }
  if (rest) out.push(rest);
  return out;
}

function stopMic() {
  onAir = false;
  mic?.stop();
  renderMic();
}

function renderMic() {
  const btn = $('#mic');
  const on = !!mic && mic.live;
  btn.setAttribute('aria-pressed', String(on));
  const label = $('span[data-i18n]', btn);
  label.dataset.i18n = on ? 'mic_stop' : 'mic_start';
  label.textContent = t(label.dataset.i18n);
  const st = $('#mic-state');
  st.classList.toggle('live', on);
  $('b', st).dataset.i18n = on ? 'mic_live' : 'mic_idle';
  $('b', st).textContent = t(on ? 'mic_live' : 'mic_idle');
  $('#mic-stats').textContent = mic && mic.chunks ? t('mic_stats', { chunks: num(mic.chunks), kb: num(Math.round(mic.bytes / 1024)) }) : '';
  btn.dataset.chunks = String(mic ? mic.chunks : 0);
  btn.dataset.recordings = String(mic ? mic.recordings : 0);
  const air = $('#onair');
  air.setAttribute('aria-pressed', String(onAir));
  $('span', air).dataset.i18n = onAir ? 'onair_stop' : 'onair_start';
  $('span', air).textContent = t($('span', air).dataset.i18n);
  const badge = $('#onair-badge');
  badge.hidden = !on;
  badge.dataset.state = connState === 'live' ? 'live' : 'reconnecting';
  $('#onair-text').textContent = t(connState === 'live' ? 'onair_badge' : 'onair_reconnecting');
}

if (page) {
  const { conn, act, actOnce, header } = page;

  $('#go-live').addEventListener('click', async (e) => {
    if (await act({ t: 'go_live' }, e.currentTarget)) header.say('');
  });

  // End needs a second press within 4 s (no blocking confirm() dialog).
  let armed = null;
  const endBtn = $('#end');
  const endLabel = $('span', endBtn);
  const disarm = () => {
    clearTimeout(armed);
    armed = null;
    endBtn.classList.remove('armed');
    endLabel.dataset.i18n = 'end';
    endLabel.textContent = t('end');
  };
  endBtn.addEventListener('click', async () => {
    if (!armed) {
      endBtn.classList.add('armed');
      endLabel.dataset.i18n = 'end_confirm';
      endLabel.textContent = t('end_confirm');
      armed = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    stopMic();
    await act({ t: 'end' }, endBtn);
  });

  // Per kind, what a failed send left in the box: the parts it was being sent as, and the key of the first (the part
  // in doubt: the node may have stored it and only its ack was lost; sent again with the same key it is acked `dup`,
  // not said twice). Sending the same text again continues with these parts; an edited text is cut afresh.
  const unsent = { speech: null, announce: null };

  // A long paste (hundreds of parts) goes one part at a time, each once acknowledged before the next: in order, at
  // the pace of the acks and the connection's rate (STAFF_RATE in staff.js), and a part the node answers
  // `rate_limited` goes again after `retry_ms` with its key (actOnce), so the session never collects errors.
  async function sendText(kind, input, stateEl) {
    const text = input.value.trim();
    if (!text || busy[kind]) return;
    busy[kind] = true;
    onStatus(status);
    try {
      await sendParts(kind, input, stateEl, text);
    } finally {
      busy[kind] = false;
      onStatus(status);
    }
  }

  async function sendParts(kind, input, stateEl, text) {
    stateEl.textContent = t('sending');
    const left = unsent[kind];
    const again = left !== null && left.rest === text;
    const parts = again ? left.parts : kind === 'speech' ? segments(text) : [text];
    let key = again ? left.key : newKey();
    unsent[kind] = null;
    let ack = null;
    let sent = 0;
    for (const part of parts) {
      if (parts.length > 1) stateEl.textContent = t('sending_part', { n: num(sent + 1), of: num(parts.length) });
      ack = await actOnce({ t: kind, text: part }, null, key);
      if (!ack) break;
      sent += 1;
      key = newKey();
    }
    if (ack) {
      input.value = '';
      stateEl.textContent = t('sent', { seq: ack.seq ?? '' });
    } else {
      // What was said stays said: only the parts not yet acknowledged are left in the box.
      const rest = sent ? parts.slice(sent).join(' ') : text;
      unsent[kind] = { rest, parts: parts.slice(sent), key };
      if (sent) input.value = rest;
      stateEl.textContent = t('not_sent', { why: header.notice.vars?.why || '' });
    }
  }

  $('#speech-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sendText('speech', $('#speech-text'), $('#speech-state'));
  });
  $('#speech-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      $('#speech-form').requestSubmit();
    }
  });
  $('#announce-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sendText('announce', $('#announce-text'), $('#announce-state'));
  });

  // ---- push-to-talk: hold the button to talk, or tap once to switch on and again to switch off.
  const micBtn = $('#mic');
  if (!Broadcaster.supported()) {
    micBtn.hidden = true;
    $('#mic-hint').dataset.i18n = 'mic_unsupported';
    $('#mic-hint').textContent = t('mic_unsupported');
  } else {
    mic = new Broadcaster(conn, { onChange: renderMic });
    globalThis.jansamvadDebug = { ...globalThis.jansamvadDebug, mic }; // read by loadtest/bench/glass_to_ear.py
    let pressedAt = 0;
    let startedByPress = false;
    const startMic = async () => {
      if (status !== 'live') {
        header.say('mic_needs_live', null, 'error');
        return;
      }
      try {
        await mic.start();
      } catch (err) {
        header.say('mic_denied', { why: err.message || err.name }, 'error');
      }
      renderMic();
    };
    micBtn.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || micBtn.disabled) return;
      pressedAt = Date.now();
      startedByPress = !mic.live;
      if (startedByPress) startMic();
    });
    micBtn.addEventListener('pointerup', () => {
      if (!pressedAt) return;
      const held = Date.now() - pressedAt;
      pressedAt = 0;
      if (startedByPress ? held > 600 : true) stopMic(); // a long hold ends on release; a tap on a live mic stops it
    });
    micBtn.addEventListener('click', (e) => {
      if (e.detail !== 0) return; // pointer clicks are handled above; this is the keyboard (Enter / Space)
      if (mic.live) stopMic();
      else startMic();
    });

    // ---- on air: one tap, on until the next one, whatever the network does meanwhile. While the connection is
    // down the chunks are dropped (listeners hear a gap, the captions go on); when it is back, a new recording starts,
    // so the node and listeners who joined meanwhile get a fresh init chunk and the players pick it up by themselves.
    const airBtn = $('#onair');
    airBtn.hidden = false;
    airBtn.addEventListener('click', async () => {
      if (onAir) {
        onAir = false;
        stopMic();
        return;
      }
      onAir = true;
      await startMic();
      if (!mic.live) onAir = false;
      renderMic();
    });
    let dropped = false;
    connState = conn.state;
    conn.on('state', (state) => {
      connState = state;
      if (state !== 'live' && mic.live) dropped = true;
      renderMic();
    });
    conn.on('welcome', () => {
      if (dropped && mic.live) mic.restart();
      dropped = false;
    });
    const level = $('#mic-level');
    setInterval(() => {
      level.value = mic.live ? mic.level() : 0;
    }, 100);
    renderMic();
  }

  // ---- dictation with the Web Speech API where the browser has it: interim results go out as final: false.
  const Recognition = globalThis.SpeechRecognition || globalThis.webkitSpeechRecognition;
  const stt = $('#stt');
  if (Recognition) {
    stt.hidden = false;
    let rec = null;
    let lastInterim = 0;
    const label = $('span', stt);
    const setStt = (on) => {
      stt.setAttribute('aria-pressed', String(on));
      label.dataset.i18n = on ? 'stt_stop' : 'stt_start';
      label.textContent = t(label.dataset.i18n);
    };
    stt.addEventListener('click', () => {
      if (rec) {
        rec.stop();
        return;
      }
      rec = new Recognition();
      rec.lang = getLang() === 'en' ? 'en-IN' : 'hi-IN';
      rec.continuous = true;
      rec.interimResults = true;
      rec.onresult = (ev) => {
        for (let i = ev.resultIndex; i < ev.results.length; i++) {
          const r = ev.results[i];
          const text = r[0].transcript.trim();
          if (!text || status !== 'live') continue;
          if (r.isFinal) actOnce({ t: 'speech', text: text.slice(0, SPEECH_MAX), final: true }, null);
          else if (Date.now() - lastInterim > 1000) {
            lastInterim = Date.now();
            conn.request({ t: 'speech', text: text.slice(0, SPEECH_MAX), final: false }).catch(() => {});
          }
        }
      };
      rec.onerror = (ev) => header.say('stt_error', { why: ev.error }, 'error');
      rec.onend = () => {
        rec = null;
        setStt(false);
      };
      rec.start();
      setStt(true);
    });
  }

  // ---- polls: create and open in one step, watch the live tallies, close for the exact final counts.
  const polls = new Map();
  const optionsBox = $('#poll-options');
  function addOption() {
    const n = optionsBox.childElementCount + 1;
    if (n > 6) return;
    const id = `poll-opt-${n}`;
    optionsBox.append(
      el(
        'div',
        { class: 'poll-opt-row' },
        el('label', { for: id, class: 'opt-label', dataset: { n }, text: t('poll_option', { n }) }),
        el('input', { id, maxlength: '80', required: n <= 2 ? true : null }),
      ),
    );
    $('#poll-add').disabled = n >= 6;
  }
  addOption();
  addOption();
  $('#poll-add').addEventListener('click', addOption);
  $('#poll-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const question = $('#poll-q').value.trim();
    const options = [...optionsBox.querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
    if (!question || options.length < 2) return;
    const btn = $('#poll-open');
    const created = await act({ t: 'poll_create', question, options }, btn);
    if (!created) return;
    if (await act({ t: 'poll_open', pid: created.pid }, btn)) {
      $('#poll-form').reset();
      $('#poll-new').open = false;
    }
  });
  renderPolls = () => {
    const all = [...polls.values()].sort((a, b) => (a.state === 'open' ? 0 : 1) - (b.state === 'open' ? 0 : 1));
    $('#poll-list').replaceChildren(
      ...all.map((p) =>
        el(
          'div',
          { class: 'poll', dataset: { pid: p.pid, state: p.state } },
          el(
            'div',
            { class: 'poll-head' },
            el('p', { class: 'poll-q', text: p.question }),
            el('span', { class: `badge ${p.state === 'open' ? 'live' : 'closed'}`, text: t(p.state === 'open' ? 'poll_live' : 'poll_closed') }),
          ),
          pollBars(p),
          p.state === 'open' && status !== 'ended' // after the end the node closes every poll itself
            ? el(
                'div',
                { class: 'qactions' },
                button('poll-close danger', 'poll_close_btn', (e) => act({ t: 'poll_close', pid: p.pid }, e.currentTarget)),
              )
            : null,
        ),
      ),
    );
  };
  conn
    .on('snapshot', (s) => {
      polls.clear();
      for (const p of s.polls || []) polls.set(p.pid, p);
      renderPolls();
    })
    .on('poll', (ev) => {
      polls.set(ev.p.pid, ev.p);
      renderPolls();
    })
    .on('poll_counts', (ev) => {
      const p = polls.get(ev.pid);
      if (p && Array.isArray(ev.c)) {
        p.counts = ev.c;
        renderPolls();
      }
    });
  onLang(() => {
    renderPolls();
    for (const l of optionsBox.querySelectorAll('.opt-label')) l.textContent = t('poll_option', { n: l.dataset.n });
  });

  // ---- themes: the public questions by `group`, ranked by the node's summed votes (`votes.g`); a group the last
  // `votes` did not name (not among the top ones) falls back to the sum of its members' votes as seen here.
  let groupVotes = {};
  function renderThemes() {
    const groups = new Map();
    for (const q of page.questions.all()) {
      const g = q.group || q.qid;
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(q);
    }
    const themes = [...groups.entries()].map(([group, qs]) => {
      qs.sort((a, b) => (a.ts || 0) - (b.ts || 0));
      const lead = qs.find((q) => q.qid === group) || qs[0];
      const own = qs.reduce((n, q) => n + (q.votes || 0), 0);
      return { group, lead, n: qs.length, votes: typeof groupVotes[group] === 'number' ? groupVotes[group] : own };
    });
    themes.sort((a, b) => b.votes - a.votes || b.n - a.n || (a.lead.ts || 0) - (b.lead.ts || 0));
    $('#themes').replaceChildren(
      ...themes.map((th) =>
        el(
          'li',
          { class: 'theme', dataset: { group: th.group, votes: th.votes, n: th.n } },
          el('span', { class: 'votebox static', title: t('votes', { n: num(th.votes) }) }, el('b', { text: num(th.votes) })),
          el(
            'div',
            { class: 'qbody' },
            el('p', { class: 'qtext', text: th.lead.text }),
            el('p', { class: 'qmeta' }, el('span', { class: 'tcount', text: th.n === 1 ? t('theme_count_one') : t('theme_count', { n: num(th.n) }) })),
          ),
        ),
      ),
    );
    $('#themes-empty').hidden = themes.length > 0;
    $('#themes-count').textContent = themes.length ? num(themes.length) : '';
  }
  conn
    .on('snapshot', renderThemes)
    .on('question', renderThemes)
    .on('votes', (ev) => {
      if (ev.g && typeof ev.g === 'object') groupVotes = ev.g;
      renderThemes();
    });
  onLang(renderThemes);
  renderThemes();

  // ---- audience figures: viewers, approved questions per minute, reactions by kind.
  const seenQ = new Map(); // qid -> when it first became public here
  let reactTotals = {};
  const rateWindowMs = 60_000;
  function renderFigures() {
    const now = Date.now();
    let qpm = 0;
    for (const ts of seenQ.values()) if (now - ts < rateWindowMs) qpm += 1;
    $('#fig-qpm').textContent = num(qpm);
    const total = Object.values(reactTotals).reduce((a, b) => a + b, 0);
    $('#fig-reactions').textContent = num(total);
    $('#react-totals').replaceChildren(
      ...REACTIONS.map(([kind, emoji]) =>
        el(
          'span',
          { class: 'react-total', dataset: { kind } },
          reactionEmoji(emoji),
          el('span', { class: 'rname', text: t(`react.${kind}`) }),
          ' ',
          el('b', { class: 'rcount', text: num(reactTotals[kind] || 0) }),
        ),
      ),
    );
  }
  conn
    .on('viewers', (ev) => ($('#fig-viewers').textContent = num(ev.n)))
    .on('snapshot', (s) => {
      if (typeof s.viewers === 'number') $('#fig-viewers').textContent = num(s.viewers);
      if (s.reactions && typeof s.reactions === 'object') reactTotals = { ...s.reactions };
      renderFigures();
      for (const q of s.questions || []) seenQ.set(q.qid, 0);
    })
    .on('question', (ev) => {
      if (!seenQ.has(ev.q.qid)) seenQ.set(ev.q.qid, Date.now());
      renderFigures();
    })
    .on('reactions', (ev) => {
      reactTotals = { ...reactTotals, ...ev.c };
      renderFigures();
    });
  setInterval(renderFigures, 5000);
  renderFigures();
  onLang(() => {
    renderFigures();
    renderMic();
  });

  conn.start();
}
