// Moderator page: /moderator.html?th=<id>#token=<moderator token>
import { $, el } from './ui.js';
import { startStaff } from './staff.js';

function button(cls, hi, en, onclick) {
  return el('button', { type: 'button', class: cls, onclick }, hi + ' ', el('small', { class: 'en', text: `(${en})` }));
}

// Queue changes (queue_add / queue_update) are not stream events and are not replayed on resume, so this page
// always asks for a fresh snapshot (with the queue) when it reconnects.
const page = startStaff('moderator', {
  resume: false,
  actions: (q, act) => {
    const m = (action) => (e) => act({ t: 'moderate', qid: q.qid, action }, e.currentTarget);
    const out = [];
    if (q.state === 'approved') out.push(button('answer', '✔ उत्तर दिया', 'Answered', m('answer')));
    out.push(q.pinned ? button('unpin', 'अनपिन', 'Unpin', m('unpin')) : button('pin', '★ पिन', 'Pin', m('pin')));
    if (q.state === 'approved') out.push(button('reject', 'हटाएँ', 'Withdraw', m('reject')));
    return out;
  },
});

if (page) {
  const { conn, act } = page;
  const queue = new Map();
  const list = $('#queue');

  function renderQueue() {
    const items = [...queue.values()].sort((a, b) => (a.ts || 0) - (b.ts || 0));
    list.replaceChildren(
      ...items.map((q) => {
        const m = (action) => (e) => act({ t: 'moderate', qid: q.qid, action }, e.currentTarget);
        const who = [q.name, q.region].filter(Boolean).join(' · ');
        const flags = Array.isArray(q.flags) && q.flags.length ? q.flags.join(', ') : '';
        return el(
          'li',
          { class: 'question pending', dataset: { qid: q.qid } },
          el('p', { class: 'qtext', text: q.text }),
          el(
            'div',
            { class: 'qmeta' },
            el('span', { class: 'who', text: who }),
            flags ? el('span', { class: 'badge flags', text: `⚠ ${flags}` }) : null,
          ),
          el(
            'div',
            { class: 'qactions' },
            button('approve primary', '✔ स्वीकारें', 'Approve', m('approve')),
            button('reject danger', '✖ अस्वीकारें', 'Reject', m('reject')),
          ),
        );
      }),
    );
    $('#queue-count').textContent = String(items.length);
    $('#queue-empty').hidden = items.length > 0;
  }

  conn
    .on('snapshot', (s) => {
      queue.clear();
      for (const q of s.queue || []) queue.set(q.qid, q);
      renderQueue();
    })
    .on('queue_add', (ev) => {
      if (ev.q && ev.q.state === 'pending') queue.set(ev.q.qid, ev.q);
      renderQueue();
    })
    .on('queue_update', (ev) => {
      if (ev.state === 'pending') return;
      queue.delete(ev.qid);
      renderQueue();
    });

  renderQueue();
  conn.start();
}
