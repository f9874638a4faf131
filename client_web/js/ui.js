// Small DOM helpers and the views shared by the three pages. User data only ever goes through textContent.
import { applyI18n, langButton, num, onLang, t } from './i18n.js';

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

/** An idempotency key: 8-64 chars of [A-Za-z0-9_-]. */
export function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, '');
  const a = new Uint8Array(16);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

const ICONS = {
  mic: 'M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2v-3.08A7 7 0 0 0 19 11h-2z',
  speaker:
    'M3 9v6h4l5 5V4L7 9H3zm13.5 3A4.5 4.5 0 0 0 14 8v8a4.47 4.47 0 0 0 2.5-4zM14 3.23v2.06a7 7 0 0 1 0 13.42v2.06A9 9 0 0 0 14 3.23z',
  pin: 'M16 9V4h1a1 1 0 0 0 0-2H7a1 1 0 0 0 0 2h1v5a3 3 0 0 1-3 3v2h5.97v7l1 1 1-1v-7H19v-2a3 3 0 0 1-3-3z',
  up: 'M12 5l8 10H4z',
  check: 'M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z',
  eye: 'M12 4.5C7 4.5 2.73 7.61 1 12c1.73 4.39 6 7.5 11 7.5s9.27-3.11 11-7.5C21.27 7.61 17 4.5 12 4.5zM12 17a5 5 0 1 1 0-10 5 5 0 0 1 0 10zm0-8a3 3 0 1 0 0 6 3 3 0 0 0 0-6z',
};

/** A decorative inline SVG icon (hidden from screen readers; the text next to it says what it is). */
export function icon(name, cls = 'icon') {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

/** Fill <span data-icon="mic"> placeholders of the static HTML. */
export function fillIcons(root = document) {
  for (const node of root.querySelectorAll('[data-icon]')) {
    if (!node.firstElementChild) node.append(icon(node.dataset.icon));
  }
}

export function params() {
  const q = new URLSearchParams(location.search);
  const h = new URLSearchParams(location.hash.replace(/^#/, ''));
  return { th: q.get('th') || '', hashToken: h.get('token') || '' };
}

export function timeOf(ts) {
  if (typeof ts !== 'number') return '';
  return new Date(ts).toLocaleTimeString('en-IN', { hour: 'numeric', minute: '2-digit' });
}

/**
 * The header every page shares: town hall status, connection indicator, viewer count, language switch.
 * Keeps its own state so a language switch can redraw it.
 */
export class Header {
  constructor() {
    this.status = '';
    this.conn = 'offline';
    this.viewers = null;
    this.staff = null;
    this.notice = { key: '', vars: null, kind: 'info' };
    fillIcons();
    applyI18n();
    const lang = $('#lang');
    if (lang) langButton(lang);
    onLang(() => this.render());
    this.render();
  }

  setStatus(s) {
    if (s) this.status = s;
    this.render();
  }

  setConn(state) {
    this.conn = state;
    this.render();
  }

  /** Citizens watching, and (staff pages) the team: leaders, moderators and admins connected, when the node says. */
  setViewers(n, staff) {
    this.viewers = n;
    this.staff = typeof staff === 'number' ? staff : null; // an older node sends no `staff`: show citizens only
    this.renderViewers(); // only the counts: redrawing the notice every second would make screen readers repeat it
  }

  renderViewers() {
    // Once the town hall is over nobody is watching: no frozen count of the last moment.
    $('.viewers').hidden = this.status === 'ended' || this.conn === 'ended';
    $('#viewers').textContent = num(this.viewers);
    const staff = $('#staff-count');
    if (staff) {
      staff.hidden = this.staff === null;
      $('#staff-viewers').textContent = num(this.staff);
    }
  }

  /** A notice by i18n key (re-translated on a language switch); an empty key hides it. */
  say(key, vars = null, kind = 'info') {
    this.notice = { key, vars, kind };
    this.render();
  }

  render() {
    const st = $('#status');
    st.dataset.status = this.status;
    st.textContent = this.status ? t(`status.${this.status}`) : '';
    st.hidden = !this.status;
    const c = $('#conn');
    c.dataset.state = this.conn;
    $('.label', c).textContent = t(`conn.${this.conn}`);
    this.renderViewers();
    const n = $('#notice');
    n.hidden = !this.notice.key;
    n.dataset.kind = this.notice.kind;
    n.textContent = this.notice.key ? t(this.notice.key, this.notice.vars) : '';
  }
}

/** The reason to show for a close code that stops the client. */
export function closeReason(code) {
  const key = `close.${code}`;
  const s = t(key);
  return s === key ? t('close.other', { code: code === undefined || code === null ? '?' : code }) : s;
}

/** The live speech: captions, newest at the bottom; interim (final: false) segments are replaced in place. */
export class SpeechView {
  constructor(list, { max = 300, empty = null } = {}) {
    this.list = list;
    this.max = max;
    this.empty = empty;
    this.interim = null;
    this.events = []; // what is shown, for the page to persist
    onLang(() => {
      for (const tag of this.list.querySelectorAll('.tag')) tag.textContent = t('announcement');
    });
  }

  clear() {
    this.list.replaceChildren();
    this.interim = null;
    this.events = [];
    this._empty();
  }

  _empty() {
    if (this.empty) this.empty.hidden = this.list.childElementCount > 0;
  }

  add(ev, kind = ev.t || 'speech') {
    const box = this.list.parentElement;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    const announce = kind === 'announce';
    const item = el(
      'li',
      { class: announce ? 'announce' : 'speech', dataset: { seq: ev.seq === undefined || ev.seq === null ? '' : ev.seq } },
      announce ? el('strong', { class: 'tag', text: t('announcement') }) : null,
      // An announcement to a region unit (docs/protocol.md section 2) names it: the citizens there, and staff.
      announce && ev.to ? el('span', { class: 'to', dataset: { to: ev.to }, text: `→ ${ev.to_name || ev.to} ` }) : null,
      el('span', { class: 'text', text: ev.text }),
      el('time', { text: timeOf(ev.ts) }),
    );
    const rec = { t: announce ? 'announce' : 'speech', seq: ev.seq, text: ev.text, ts: ev.ts, final: ev.final };
    if (announce && ev.to) Object.assign(rec, { to: ev.to, to_name: ev.to_name });
    if (!announce && this.interim) {
      this.interim.replaceWith(item);
      this.interim = null;
      this.events.pop();
    } else {
      this.list.append(item);
    }
    this.events.push(rec);
    if (!announce && ev.final === false) {
      item.classList.add('interim');
      this.interim = item;
    }
    while (this.list.childElementCount > this.max) this.list.firstElementChild.remove();
    if (this.events.length > this.max) this.events.splice(0, this.events.length - this.max);
    if (atBottom) box.scrollTop = box.scrollHeight;
    this._empty();
  }

  load(events) {
    this.clear();
    for (const ev of events || []) this.add(ev, ev.t === 'announce' ? 'announce' : 'speech');
  }
}

/** A question's vote count, not a button (staff pages; a citizen's own question). */
export function voteCount(q) {
  return el('span', { class: 'votebox static', title: t('votes', { n: q.votes || 0 }) }, icon('up'), el('b', { text: num(q.votes || 0) }));
}

/**
 * The public questions: pinned first, then open ones by votes, then answered ones.
 * `lead(q)` gives a node for the left column (the citizen's upvote button, else a vote count);
 * `badges(q)` extra badges above the text; `actions(q)` extra nodes (buttons) under the question.
 */
export class QuestionsView {
  constructor(list, { actions = () => [], lead = null, badges = () => [], empty = null, count = null } = {}) {
    this.list = list;
    this.actions = actions;
    this.lead = lead;
    this.badges = badges;
    this.empty = empty;
    this.count = count;
    this.qs = new Map();
    onLang(() => this.render());
  }

  load(questions) {
    this.qs.clear();
    for (const q of questions || []) if (q.state === 'approved' || q.state === 'answered') this.qs.set(q.qid, q);
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

  all() {
    return [...this.qs.values()];
  }

  render() {
    const rank = (q) => (q.pinned ? 0 : q.state === 'answered' ? 2 : 1);
    const sorted = this.all().sort(
      (a, b) => rank(a) - rank(b) || (b.votes || 0) - (a.votes || 0) || (a.ts || 0) - (b.ts || 0),
    );
    // Keep keyboard focus on the same button across a re-render.
    const focused = document.activeElement;
    const row = focused && this.list.contains(focused) ? focused.closest('li') : null;
    const fq = row ? row.dataset.qid : null;
    const fcls = fq ? focused.className : null;
    this.list.replaceChildren(...sorted.map((q) => this.row(q)));
    const again = fq ? this.list.querySelector(`li[data-qid="${CSS.escape(fq)}"] .${CSS.escape(fcls.split(' ')[0] || 'x')}`) : null;
    if (again) again.focus();
    if (this.empty) this.empty.hidden = sorted.length > 0;
    if (this.count) this.count.textContent = sorted.length ? num(sorted.length) : '';
  }

  row(q) {
    const badges = [];
    if (q.pinned) badges.push(el('span', { class: 'badge pinned' }, icon('pin'), t('pinned')));
    if (q.state === 'answered') badges.push(el('span', { class: 'badge answered' }, icon('check'), t('q.answered')));
    badges.push(...this.badges(q));
    const who = [q.name, q.region].filter(Boolean).join(' · ');
    const lead = this.lead ? this.lead(q) : voteCount(q);
    const actions = this.actions(q);
    return el(
      'li',
      { class: `question state-${q.state}${q.pinned ? ' pinned' : ''}`, dataset: { qid: q.qid, state: q.state } },
      lead,
      el(
        'div',
        { class: 'qbody' },
        badges.length ? el('div', { class: 'badges' }, ...badges) : null,
        el('p', { class: 'qtext', text: q.text }),
        el('p', { class: 'qmeta' }, el('span', { class: 'who', text: who }), el('time', { text: timeOf(q.ts) })),
        actions.length ? el('div', { class: 'qactions' }, ...actions) : null,
      ),
    );
  }
}

/** The reactions, in the order the buttons show them: kind (the protocol's name) and its emoji. */
export const REACTIONS = [
  ['clap', '👏'],
  ['heart', '❤️'],
  ['thumbs_up', '👍'],
  ['laugh', '😂'],
  ['sad', '😢'],
];

const drawableCache = new Map();

/**
 * False when this device has no font for `ch` and would show the empty missing-glyph box instead (👏 on a phone or
 * a Linux desktop without a colour-emoji font). Drawn once on a small canvas in the page's font and compared with a
 * private-use code point, which no font draws. When in doubt (no canvas), true: the text label is there anyway.
 */
export function drawable(ch) {
  if (drawableCache.has(ch)) return drawableCache.get(ch);
  let ok = true;
  try {
    const size = 32;
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = size;
    const g = canvas.getContext('2d', { willReadFrequently: true });
    if (g) {
      g.font = `24px ${getComputedStyle(document.body).fontFamily}`;
      g.textBaseline = 'top';
      const pixels = (text) => {
        g.clearRect(0, 0, size, size);
        g.fillText(text, 2, 2);
        return g.getImageData(0, 0, size, size).data;
      };
      const drawn = pixels(ch);
      const box = pixels('\u{10FFFD}');
      ok = drawn.some((v, i) => v !== box[i]);
    }
  } catch {
    ok = true;
  }
  drawableCache.set(ch, ok);
  return ok;
}

/** A reaction's emoji (decorative: the label beside it says the same), or null where the device cannot draw it. */
export function reactionEmoji(emoji) {
  return drawable(emoji) ? el('span', { class: 'emoji', 'aria-hidden': 'true', text: emoji }) : null;
}

/** A button with a translated label (and optional icon); the label follows language switches via data-i18n. */
export function button(cls, key, onclick, iconName) {
  return el(
    'button',
    { type: 'button', class: cls, onclick },
    iconName ? icon(iconName) : null,
    el('span', { 'data-i18n': key, text: t(key) }),
  );
}

/** A poll's results as bars: `mine` marks the option this device voted for. */
export function pollBars(p, mine = null) {
  const counts = p.counts && p.counts.length ? p.counts : p.options.map(() => 0);
  const total = counts.reduce((a, b) => a + b, 0);
  return el(
    'ol',
    { class: 'poll-bars' },
    ...p.options.map((label, i) => {
      const n = counts[i] || 0;
      const pct = total ? Math.round((n / total) * 100) : 0;
      return el(
        'li',
        { class: i === mine ? 'mine' : null, dataset: { option: i } },
        el(
          'div',
          { class: 'poll-line' },
          el('span', { class: 'poll-label', text: label }),
          i === mine ? el('span', { class: 'badge answered' }, icon('check'), t('poll_mine')) : null,
          el('span', { class: 'poll-pct', text: `${pct}%` }),
        ),
        el('div', { class: 'pbar', 'aria-hidden': 'true' }, el('span', { style: `width: ${pct}%` })),
        el('span', { class: 'sr-only', text: t('poll_votes', { n: num(n) }) }),
      );
    }),
    el('li', { class: 'poll-total note', text: t('poll_votes', { n: num(total) }) }),
  );
}
