// Small DOM helpers and the views shared by the three pages. User data only ever goes through textContent.

/** el('p', {class: 'x', dataset: {qid}}, 'text', child) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'onclick') node.addEventListener('click', v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** A bilingual label: Hindi first, English small. */
export function bi(hi, en) {
  return [el('span', { class: 'hi', text: hi }), ' ', el('small', { class: 'en', text: `(${en})` })];
}

export function params() {
  const q = new URLSearchParams(location.search);
  const h = new URLSearchParams(location.hash.replace(/^#/, ''));
  return { th: q.get('th') || '', hashToken: h.get('token') || '' };
}

const STATUS_LABEL = {
  scheduled: ['निर्धारित', 'scheduled'],
  live: ['लाइव', 'live'],
  ended: ['समाप्त', 'ended'],
};

export function showStatus(node, status) {
  node.replaceChildren(...bi(...(STATUS_LABEL[status] || [status || '…', status || 'unknown'])));
  node.dataset.status = status || '';
}

const CONN_LABEL = {
  connecting: ['जुड़ रहा है…', 'connecting…'],
  live: ['जुड़ा हुआ', 'live'],
  reconnecting: ['फिर से जुड़ रहा है…', 'reconnecting…'],
  offline: ['ऑफ़लाइन', 'offline'],
};

export function showConn(node, state, detail) {
  node.replaceChildren(el('span', { class: 'dot', 'aria-hidden': 'true' }), ...bi(...CONN_LABEL[state]));
  node.dataset.state = state;
  node.title = detail || '';
}

export function showViewers(node, n) {
  node.textContent = String(n);
}

export function showNotice(node, text, kind = 'info') {
  if (!text) {
    node.hidden = true;
    node.textContent = '';
    return;
  }
  node.hidden = false;
  node.dataset.kind = kind;
  node.textContent = text;
}

function timeOf(ts) {
  if (typeof ts !== 'number') return '';
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The live speech: captions, newest at the bottom; interim (final: false) segments are replaced in place. */
export class SpeechView {
  constructor(list, { max = 300 } = {}) {
    this.list = list;
    this.max = max;
    this.interim = null;
  }

  clear() {
    this.list.replaceChildren();
    this.interim = null;
  }

  _stickToBottom(fn) {
    const box = this.list;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    fn();
    while (box.childElementCount > this.max) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  add(ev, kind = ev.t || 'speech') {
    this._stickToBottom(() => {
      const item = el(
        'li',
        { class: kind === 'announce' ? 'announce' : 'speech', dataset: { seq: ev.seq ?? '' } },
        kind === 'announce' ? el('strong', { class: 'tag', text: 'घोषणा · Announcement' }) : null,
        el('span', { class: 'text', text: ev.text }),
        el('time', { text: timeOf(ev.ts) }),
      );
      if (kind === 'speech' && this.interim) {
        this.interim.replaceWith(item);
        this.interim = null;
      } else {
        this.list.append(item);
      }
      if (kind === 'speech' && ev.final === false) {
        item.classList.add('interim');
        this.interim = item;
      }
    });
  }

  load(events) {
    this.clear();
    for (const ev of events || []) this.add(ev, ev.t === 'announce' ? 'announce' : 'speech');
  }
}

const QSTATE_LABEL = {
  approved: ['स्वीकृत', 'approved'],
  answered: ['उत्तर दिया', 'answered'],
  pending: ['प्रतीक्षा में', 'pending'],
  rejected: ['अस्वीकृत', 'rejected'],
};

/**
 * The public questions: pinned first, then open ones by votes, then answered ones.
 * `actions(q)` returns extra nodes (buttons) for a question row.
 */
export class QuestionsView {
  constructor(list, { actions = () => [], empty = null } = {}) {
    this.list = list;
    this.actions = actions;
    this.empty = empty;
    this.qs = new Map();
  }

  load(questions) {
    this.qs.clear();
    for (const q of questions || []) if (q.state !== 'rejected') this.qs.set(q.qid, q);
    this.render();
  }

  upsert(q) {
    if (q.state === 'rejected' || q.state === 'pending') this.qs.delete(q.qid);
    else this.qs.set(q.qid, { ...this.qs.get(q.qid), ...q });
    this.render();
  }

  votes(v) {
    let changed = false;
    for (const [qid, n] of Object.entries(v || {})) {
      const q = this.qs.get(qid);
      if (q && q.votes !== n) {
        q.votes = n;
        changed = true;
      }
    }
    if (changed) this.render();
  }

  get(qid) {
    return this.qs.get(qid);
  }

  render() {
    const rank = (q) => (q.pinned ? 0 : q.state === 'answered' ? 2 : 1);
    const sorted = [...this.qs.values()].sort(
      (a, b) => rank(a) - rank(b) || (b.votes || 0) - (a.votes || 0) || (a.ts || 0) - (b.ts || 0),
    );
    this.list.replaceChildren(...sorted.map((q) => this.row(q)));
    if (this.empty) this.empty.hidden = sorted.length > 0;
  }

  row(q) {
    const badges = el('span', { class: 'badges' });
    if (q.pinned) badges.append(el('span', { class: 'badge pinned', text: '★ पिन (pinned)' }));
    if (q.state === 'answered') badges.append(el('span', { class: 'badge answered', text: '✔ उत्तर दिया (answered)' }));
    const who = [q.name, q.region].filter(Boolean).join(' · ');
    return el(
      'li',
      { class: `question state-${q.state}${q.pinned ? ' pinned' : ''}`, dataset: { qid: q.qid, state: q.state } },
      el('p', { class: 'qtext', text: q.text }),
      el(
        'div',
        { class: 'qmeta' },
        el('span', { class: 'who', text: who }),
        badges,
        el('span', { class: 'votes', title: 'votes', text: `▲ ${q.votes || 0}` }),
      ),
      el('div', { class: 'qactions' }, ...this.actions(q)),
    );
  }
}

export function stateLabel(state) {
  const l = QSTATE_LABEL[state];
  return l ? `${l[0]} (${l[1]})` : state;
}
