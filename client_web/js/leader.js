// Leader page: /leader.html?th=<id>#token=<leader token>
import { $, el, showNotice } from './ui.js';
import { startStaff } from './staff.js';

function onStatus(status) {
  // Offer only what applies: go live from scheduled, end while not ended, speak while live.
  $('#go-live').disabled = status !== 'scheduled';
  $('#end').disabled = status === 'ended';
  for (const id of ['#speech-send', '#announce-send']) $(id).disabled = status !== 'live';
}

const page = startStaff('leader', {
  onStatus,
  actions: (q, act) => {
    const out = [];
    if (q.state === 'approved') {
      out.push(
        el(
          'button',
          { type: 'button', class: 'answer', onclick: (e) => act({ t: 'moderate', qid: q.qid, action: 'answer' }, e.currentTarget) },
          '✔ उत्तर दिया ',
          el('small', { class: 'en', text: '(Answered)' }),
        ),
      );
    }
    const action = q.pinned ? 'unpin' : 'pin';
    out.push(
      el(
        'button',
        { type: 'button', class: action, onclick: (e) => act({ t: 'moderate', qid: q.qid, action }, e.currentTarget) },
        q.pinned ? 'अनपिन ' : '★ पिन ',
        el('small', { class: 'en', text: q.pinned ? '(Unpin)' : '(Pin)' }),
      ),
    );
    return out;
  },
});

if (page) {
  const { conn, act, notice } = page;

  $('#go-live').addEventListener('click', async (e) => {
    if (await act({ t: 'go_live' }, e.currentTarget)) showNotice(notice, '');
  });

  // End needs a second click within 4 s (no blocking confirm() dialog).
  let armed = null;
  const endBtn = $('#end');
  const endLabel = [...endBtn.childNodes];
  const restoreEnd = () => endBtn.replaceChildren(...endLabel.map((n) => n.cloneNode(true)));
  endBtn.addEventListener('click', async () => {
    if (!armed) {
      endBtn.textContent = 'पक्का? फिर दबाएँ (Sure? Click again)';
      armed = setTimeout(() => {
        armed = null;
        restoreEnd();
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    restoreEnd();
    await act({ t: 'end' }, endBtn);
  });

  async function sendText(kind, input, stateEl) {
    const text = input.value.trim();
    if (!text) return;
    stateEl.textContent = 'भेजा जा रहा है… (sending…)';
    const ack = await act({ t: kind, text }, null);
    if (ack) {
      input.value = '';
      stateEl.textContent = `✓ भेजा गया (sent) #${ack.seq ?? ''}`;
    } else {
      stateEl.textContent = 'नहीं भेजा गया (not sent)';
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

  conn.start();
}
