// Moderator console: /moderator.html?th=<id>#token=<moderator token>
// The live queue of pending questions (newest, oldest or most-voted first), approve / reject / pin, keyboard
// shortcuts, bulk actions, flags, and a log of every decision (queue_update) by anyone.
// Views: a language (hi / en) and a region filter act on the queue client-side; the cursor, select-all and the bulk
// buttons only ever see the filtered view. Near-duplicates (same `group`) show as one theme under the group's first
// question ("+3 similar", expandable), decided together with the theme buttons.
// A local moderator (a token scoped to a region unit, docs/protocol.md section 3.1) sees its unit in the header and
// only its subtree's questions (the node sends the rest of the moderation stream as `skip`), and forwards the good
// ones up a level; a town-hall-wide moderator sees the questions the districts forwarded, best per district.
import { num, onLang, t } from './i18n.js';
import { showForwarded } from './forwarded.js';
import { startStaff } from './staff.js';
import { $, button, el, timeOf } from './ui.js';

// Queue changes (queue_add, queue_update, claim_update) are the moderation stream, numbered `mseq` (docs/protocol.md,
// section 2). The page applies each notice once (an mseq it has seen is skipped), and on reconnect sends last_mseq
// with last_seq: the node replays what was missed, or sends a snapshot with the whole queue. A hole in mseq (the
// node promises none) makes the page start again from a snapshot.
let lastMseq = null; // the highest mseq applied; null before the first snapshot
const page = startStaff('moderator', {
  resume: true,
  helloExtra: () => (lastMseq === null ? {} : { last_mseq: lastMseq }),
  actions: (q, act) => {
    const m = (action) => (e) => act({ t: 'moderate', qid: q.qid, action }, e.currentTarget);
    const out = [];
    if (q.state === 'approved') out.push(button('answer ok', 'mark_answered', m('answer'), 'check'));
    out.push(q.pinned ? button('unpin', 'unpin', m('unpin'), 'pin') : button('pin', 'pin', m('pin'), 'pin'));
    if (q.state === 'approved') out.push(button('reject danger', 'withdraw', m('reject')));
    return out;
  },
});

if (page) {
  const { conn, act } = page;
  const queue = new Map(); // qid -> pending question (with sub, flags)
  const known = new Map(); // qid -> {text, state, pinned}: what a decision in the log refers to
  const selected = new Set();
  const log = [];
  let current = null; // qid of the keyboard cursor
  const claims = new Map(); // qid -> {by, until}: who is deciding which question (claim_update)
  let myClaim = null;
  let sort = localStorage.getItem('jansamvad.mod.sort') || 'newest';
  let langView = ''; // '' (all), 'hi' or 'en'
  let regionView = ''; // '' (all) or a region seen in the queue
  const expanded = new Set(); // groups whose similar questions are shown
  const list = $('#queue');
  const scope = tokenScope(await conn.getToken()); // '' for a town-hall-wide moderator

  const remember = (q) => known.set(q.qid, { text: q.text, state: q.state, pinned: !!q.pinned });

  function ordered() {
    const items = [...queue.values()];
    if (sort === 'votes') items.sort((a, b) => (b.votes || 0) - (a.votes || 0) || (b.ts || 0) - (a.ts || 0));
    else if (sort === 'oldest') items.sort((a, b) => (a.ts || 0) - (b.ts || 0));
    else items.sort((a, b) => (b.ts || 0) - (a.ts || 0));
    return items;
  }

  const groupOf = (q) => q.group || q.qid;
  const inView = (q) => (!langView || q.lang === langView) && (!regionView || (q.region || '') === regionView);

  /** The filtered queue, in order. Everything that acts on "the queue" (keys, select-all, bulk) uses this. */
  const visible = () => ordered().filter(inView);

  /**
   * The filtered queue as themes: each group once, where its first member (in the current order) stands, led by
   * the group's first question when it is still pending here, else by its first member in view.
   */
  function themes() {
    const byGroup = new Map();
    for (const q of visible()) {
      const g = groupOf(q);
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(q);
    }
    return [...byGroup.entries()].map(([group, qs]) => {
      const i = qs.findIndex((q) => q.qid === group);
      const lead = i > 0 ? qs.splice(i, 1)[0] : qs.shift();
      return { group, lead, rest: qs };
    });
  }

  /** The rows on screen, top to bottom: each theme's lead, then its similar questions when expanded. */
  function shown() {
    const out = [];
    for (const th of themes()) {
      out.push({ q: th.lead, th });
      if (th.rest.length && expanded.has(th.group)) for (const q of th.rest) out.push({ q, th, member: true });
    }
    return out;
  }

  async function decideTheme(th, action, btn) {
    const qids = [th.lead, ...th.rest].map((q) => q.qid).filter((qid) => !claimedByOther(qid));
    if (btn) btn.disabled = true;
    await Promise.all(qids.map((qid) => decide(qid, action, null)));
    if (btn) btn.disabled = false;
  }

  async function decide(qid, action, btn) {
    const msg = { t: 'moderate', qid, action };
    const reason = $('#reason').value.trim();
    if (action === 'reject' && reason) msg.reason = reason;
    const ack = await act(msg, btn);
    if (ack && ack.state && ack.state !== 'pending') {
      queue.delete(qid);
      selected.delete(qid);
      renderQueue();
    }
    return ack;
  }

  /** The keyboard cursor claims its question (30 s on the node), so two moderators never decide the same one. */
  function claimCurrent() {
    const qid = current;
    if (myClaim && myClaim !== qid) conn.request({ t: 'release', qid: myClaim }).catch(() => {});
    myClaim = null;
    if (!qid) return;
    const held = claims.get(qid);
    if (held && held.by !== page.state.me && held.until > Date.now()) return;
    myClaim = qid;
    conn.request({ t: 'claim', qid }).catch(() => {
      if (myClaim === qid) myClaim = null; // someone else was quicker: their claim_update says who
    });
  }

  const claimedByOther = (qid) => {
    const c = claims.get(qid);
    return !!c && c.by !== page.state.me && c.until > Date.now();
  };

  async function restrict(q, action, btn, text = `${q.name}: ${q.text}`) {
    const msg = { t: 'restrict', sub: q.sub, action };
    const reason = $('#reason').value.trim();
    if (reason) msg.reason = reason;
    if (action === 'timeout') msg.seconds = 600;
    const ack = await act(msg, btn);
    if (ack) {
      const entry = { ts: Date.now(), qid: q.qid, action, by: page.state.me, reason, text };
      if (action !== 'lift') entry.sub = q.sub; // a time-out or ban made here can be lifted from the log
      log.unshift(entry);
      renderLog();
    }
    return ack;
  }

  async function lift(d, btn) {
    if (await restrict({ qid: d.qid, sub: d.sub }, 'lift', btn, d.text)) {
      d.sub = null; // lifted: no second button
      renderLog();
    }
  }

  function armed(btn, onConfirm) {
    // A second press within 4 s confirms (no blocking confirm() dialog).
    if (btn.classList.contains('armed')) {
      btn.classList.remove('armed');
      onConfirm();
      return;
    }
    btn.classList.add('armed');
    $('span', btn).textContent = t('ban_confirm');
    setTimeout(() => {
      btn.classList.remove('armed');
      $('span', btn).textContent = t('ban');
    }, 4000);
  }

  /** Send a question up to the parent level's queue; it stays pending here, marked as forwarded. */
  async function forward(q, btn) {
    const ack = await act({ t: 'moderate', qid: q.qid, action: 'forward' }, btn);
    if (ack) renderQueue();
    return ack;
  }

  async function approvePin(qid, btn) {
    if (await decide(qid, 'approve', btn)) await act({ t: 'moderate', qid, action: 'pin' }, btn);
  }

  function row({ q, th, member = false }) {
    const author = [q.name, q.region].filter(Boolean).join(' · ');
    const flags = Array.isArray(q.flags) ? q.flags : [];
    const other = claimedByOther(q.qid);
    const claim = claims.get(q.qid);
    const lead = !member && th.rest.length > 0;
    const cls =
      `question pending${selected.has(q.qid) ? ' sel' : ''}${current === q.qid ? ' cur' : ''}` +
      (other ? ' claimed-other' : '') +
      (lead ? ' theme' : '') +
      (member ? ' member' : '');
    // The theme: its size, a toggle for its similar questions, and decisions for all of them at once.
    let themeBar = null;
    if (lead) {
      const open = expanded.has(th.group);
      const n = th.rest.length + 1;
      const toggleBtn = el('button', {
        type: 'button',
        class: 'similar',
        'aria-expanded': String(open),
        text: t('theme_similar', { n: num(th.rest.length) }),
      });
      toggleBtn.addEventListener('click', () => {
        if (open) expanded.delete(th.group);
        else expanded.add(th.group);
        renderQueue();
      });
      themeBar = el(
        'div',
        { class: 'theme-bar' },
        toggleBtn,
        el('button', {
          type: 'button',
          class: 'theme-approve ok',
          text: t('theme_approve', { n: num(n) }),
          onclick: (e) => decideTheme(th, 'approve', e.currentTarget),
        }),
        el('button', {
          type: 'button',
          class: 'theme-reject danger',
          text: t('theme_reject', { n: num(n) }),
          onclick: (e) => decideTheme(th, 'reject', e.currentTarget),
        }),
      );
    }
    // The group's first question was already decided (or is filtered out): say which theme this one joined.
    const first = !member && th.group !== q.qid ? known.get(th.group) : null;
    const pick = el('input', {
      type: 'checkbox',
      class: 'pick',
      'aria-label': `${t('select_one')}: ${q.text.slice(0, 60)}`,
      checked: selected.has(q.qid) ? true : null,
    });
    pick.addEventListener('change', () => toggle(q.qid, pick.checked));
    const li = el(
      'li',
      { class: cls, dataset: { qid: q.qid, group: th.group, lang: q.lang || '' }, tabindex: '-1' },
      pick,
      el(
        'div',
        { class: 'qbody' },
        // Auto-moderation flags: why the node held this question for a human.
        flags.length ? el('div', { class: 'badges' }, el('span', { class: 'badge flags', text: `⚠ ${t('flags')}: ${flags.join(', ')}` })) : null,
        claim && claim.until > Date.now()
          ? el('p', { class: `claim${other ? '' : ' me'}`, text: other ? t('claimed_by', { who: who(claim.by) }) : t('claimed_me') })
          : null,
        first && first.text ? el('p', { class: 'theme-of', text: t('theme_of', { text: first.text }) }) : null,
        q.fwd ? el('p', { class: 'fwd', text: t('fwd_badge', { to: q.fwd === '*' ? t('fwd_top') : q.fwd }) }) : null,
        el('p', { class: 'qtext', text: q.text }),
        el(
          'p',
          { class: 'qmeta' },
          el('span', { class: 'who', text: author }),
          el('time', { text: timeOf(q.ts) }),
          q.votes ? el('span', { text: t('votes', { n: num(q.votes) }) }) : null,
        ),
        el(
          'div',
          { class: 'qactions' },
          button('approve ok', 'approve', (e) => decide(q.qid, 'approve', e.currentTarget), 'check'),
          button('reject danger', 'reject', (e) => decide(q.qid, 'reject', e.currentTarget)),
          button('approve-pin', 'approve_pin', (e) => approvePin(q.qid, e.currentTarget), 'pin'),
          // The author: a 10-minute time-out, or a ban (second press confirms); the reason field applies to both.
          scope ? button('forward', 'forward_up', (e) => forward(q, e.currentTarget)) : null,
          q.sub ? button('timeout', 'timeout', (e) => restrict(q, 'timeout', e.currentTarget)) : null,
          q.sub
            ? button('ban danger', 'ban', (e) => {
                const b = e.currentTarget;
                armed(b, () => restrict(q, 'ban', b));
              })
            : null,
        ),
        themeBar,
      ),
    );
    if (other) for (const b of li.querySelectorAll('.approve, .reject, .approve-pin')) b.disabled = true;
    li.addEventListener('click', (e) => {
      if (e.target.closest('button, input')) return;
      current = q.qid;
      claimCurrent();
      renderQueue();
    });
    return li;
  }

  // ---- the view: language buttons and a region select built from the regions seen in the queue
  const langBtns = [...document.querySelectorAll('#lang-filter button')];
  for (const b of langBtns) {
    b.addEventListener('click', () => {
      langView = b.dataset.lang;
      renderQueue();
    });
  }
  const regionSel = $('#region-filter');
  regionSel.addEventListener('change', () => {
    regionView = regionSel.value;
    renderQueue();
  });

  function renderFilters() {
    const counts = { '': 0, hi: 0, en: 0 };
    const regions = new Set();
    for (const q of queue.values()) {
      if (!regionView || (q.region || '') === regionView) {
        counts[''] += 1;
        if (q.lang in counts) counts[q.lang] += 1;
      }
      if (q.region) regions.add(q.region);
    }
    for (const b of langBtns) {
      b.setAttribute('aria-pressed', String(b.dataset.lang === langView));
      $('.n', b).textContent = num(counts[b.dataset.lang] || 0);
    }
    if (regionView) regions.add(regionView); // keep the chosen one while it has no questions left
    const names = [...regions].sort((a, b) => a.localeCompare(b, 'hi'));
    const want = ['', ...names];
    const have = [...regionSel.options].map((o) => o.value);
    if (want.join('\n') !== have.join('\n')) {
      regionSel.replaceChildren(...want.map((r) => new Option(r || t('region_all'), r)));
    } else regionSel.options[0].textContent = t('region_all');
    regionSel.value = regionView;
  }

  function renderQueue(focus = false) {
    renderFilters();
    const view = visible();
    const rows = shown();
    const inViewIds = new Set(view.map((q) => q.qid));
    if (current && !rows.some((r) => r.q.qid === current)) current = null;
    list.replaceChildren(...rows.map(row));
    const filtered = langView || regionView;
    $('#queue-count').textContent = queue.size
      ? filtered ? `${num(view.length)} / ${num(queue.size)}` : num(queue.size)
      : '';
    $('#queue-empty').hidden = view.length > 0;
    const empty = $('#queue-empty');
    empty.dataset.i18n = queue.size ? 'queue_filtered_empty' : 'queue_empty';
    empty.textContent = t(empty.dataset.i18n);
    // A selection never reaches outside the view: what a filter hides is deselected.
    for (const qid of selected) if (!inViewIds.has(qid)) selected.delete(qid);
    $('#selected-count').textContent = selected.size ? t('selected', { n: num(selected.size) }) : '';
    $('#approve-selected').disabled = $('#reject-selected').disabled = selected.size === 0;
    const all = $('#select-all');
    all.checked = view.length > 0 && selected.size === view.length;
    all.indeterminate = selected.size > 0 && selected.size < view.length;
    if (focus && current) {
      const li = list.querySelector(`li[data-qid="${CSS.escape(current)}"]`);
      li?.focus();
      li?.scrollIntoView({ block: 'nearest' });
    }
  }

  function toggle(qid, on) {
    if (on) selected.add(qid);
    else selected.delete(qid);
    renderQueue();
  }

  async function bulk(action) {
    const qids = visible()
      .map((q) => q.qid)
      .filter((qid) => selected.has(qid));
    await Promise.all(qids.map((qid) => decide(qid, action, null)));
  }

  $('#select-all').addEventListener('change', (e) => {
    selected.clear();
    if (e.target.checked) for (const q of visible()) selected.add(q.qid);
    renderQueue();
  });
  $('#approve-selected').addEventListener('click', () => bulk('approve'));
  $('#reject-selected').addEventListener('click', () => bulk('reject'));
  const sortSel = $('#sort');
  sortSel.value = sort;
  sortSel.addEventListener('change', () => {
    sort = sortSel.value;
    localStorage.setItem('jansamvad.mod.sort', sort);
    renderQueue();
  });

  // Keyboard: j/k move, a approve, r reject, p approve and pin, x select. Not while typing in a field.
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = e.target.tagName;
    if ((tag === 'INPUT' && e.target.type !== 'checkbox') || tag === 'TEXTAREA' || tag === 'SELECT') return;
    const items = shown().map((r) => r.q); // the rows on screen, in the current view
    if (!items.length) return;
    let i = items.findIndex((q) => q.qid === current);
    const key = e.key.toLowerCase();
    if (key === 'j' || key === 'k') {
      i = i < 0 ? 0 : Math.max(0, Math.min(items.length - 1, i + (key === 'j' ? 1 : -1)));
      current = items[i].qid;
      claimCurrent();
      renderQueue(true);
    } else if (i >= 0 && (key === 'a' || key === 'r' || key === 'p' || key === 'x')) {
      const qid = current;
      const next = items[i + 1] || items[i - 1];
      if (key === 'x') {
        toggle(qid, !selected.has(qid));
        return;
      }
      if (claimedByOther(qid)) return;
      current = next ? next.qid : null; // the cursor moves on to the next question
      myClaim = null; // deciding ends the claim on the node
      claimCurrent();
      if (key === 'a') decide(qid, 'approve', null);
      else if (key === 'r') decide(qid, 'reject', null);
      else approvePin(qid, null);
      renderQueue(true);
    } else return;
    e.preventDefault();
  });

  // ---- the decision log
  function who(by) {
    if (by === page.state.me) return t('log_you');
    if (by === 'auto') return t('log_auto');
    // The demo and the admin API give staff subs a role prefix (l-…, m-…): say the role, keep the id short.
    if (/^l-/.test(by)) return t('log_leader');
    if (/^m-/.test(by)) return `${t('log_moderator')} ${by.slice(-4)}`;
    return by;
  }

  function renderLog() {
    $('#log-empty').hidden = log.length > 0;
    $('#log').replaceChildren(
      ...log.map((d) =>
        el(
          'li',
          { dataset: { qid: d.qid, action: d.action } },
          el('time', { text: timeOf(d.ts) }),
          el('span', { class: 'who', title: d.by, text: who(d.by) }),
          ' · ',
          el('span', { class: `act ${d.action}`, text: t(`act.${d.action}`) }),
          d.reason ? el('span', { class: 'note', text: ` — ${d.reason}` }) : null,
          el('span', { class: 'ltext', text: d.text || d.qid }),
          d.sub ? button('lift', 'lift', (e) => lift(d, e.currentTarget)) : null,
        ),
      ),
    );
  }

  /** Whether a moderation notice is new: false for one already applied (a replay after a resume, a repeat). */
  function fresh(ev) {
    if (typeof ev.mseq !== 'number') return true;
    if (lastMseq !== null && ev.mseq <= lastMseq) return false;
    if (lastMseq !== null && ev.mseq > lastMseq + 1) {
      lastMseq = null;
      conn.resync(`mseq hole: got ${ev.mseq}`);
      return false;
    }
    lastMseq = ev.mseq;
    return true;
  }

  conn
    .on('snapshot', (s) => {
      lastMseq = typeof s.mseq === 'number' ? s.mseq : null;
      queue.clear();
      for (const q of s.queue || []) {
        queue.set(q.qid, q);
        remember(q);
      }
      for (const q of s.questions || []) remember(q);
      renderQueue();
    })
    .on('queue_add', (ev) => {
      if (!fresh(ev)) return;
      if (ev.q && ev.q.state === 'pending') {
        queue.set(ev.q.qid, ev.q);
        remember(ev.q);
      }
      renderQueue();
    })
    // The decision log reads state changes from the moderation stream (queue_update). The public `question` event
    // of the same decision travels on another channel and may arrive first: it must not record the new state, or
    // the queue_update would look like no change and the decision would be missing from the log.
    .on('question', (ev) => {
      if (!known.has(ev.q.qid)) remember(ev.q);
    })
    .on('claim_update', (ev) => {
      if (!fresh(ev)) return;
      if (ev.by) claims.set(ev.qid, { by: ev.by, until: ev.until || 0 });
      else claims.delete(ev.qid);
      renderQueue();
    })
    // A notice about a question outside this moderator's scope: only its number (no hole in mseq).
    .on('skip', (ev) => {
      fresh(ev);
    })
    .on('queue_update', (ev) => {
      if (!fresh(ev)) return;
      const before = known.get(ev.qid) || { text: '', state: 'pending', pinned: false };
      let action = null;
      if (ev.state !== before.state) action = { approved: 'approve', rejected: 'reject', answered: 'answer' }[ev.state];
      else if (!!ev.pinned !== before.pinned) action = ev.pinned ? 'pin' : 'unpin';
      const waiting = queue.get(ev.qid);
      if (ev.fwd && (!waiting || waiting.fwd !== ev.fwd)) {
        action = 'forward';
        if (waiting) waiting.fwd = ev.fwd;
      }
      known.set(ev.qid, { text: before.text, state: ev.state, pinned: !!ev.pinned });
      if (action) {
        log.unshift({ ts: Date.now(), qid: ev.qid, action, by: ev.by, reason: ev.reason, text: before.text });
        if (log.length > 200) log.pop();
        renderLog();
      }
      if (ev.state !== 'pending') queue.delete(ev.qid);
      renderQueue();
    });
  setInterval(() => {
    // Claims run out on the node after claim_ttl without a claim_update: redraw when one may have.
    const now = Date.now();
    let stale = false;
    for (const [qid, c] of claims) {
      if (c.until <= now) {
        claims.delete(qid);
        stale = true;
      }
    }
    if (stale) renderQueue();
  }, 5000);

  // ---- the scope in the header (Hindi first), and for a town-hall-wide moderator the districts' best questions
  let scopeUnit = null;
  function renderScope() {
    const tag = $('#scope');
    tag.hidden = false;
    tag.dataset.scope = scope;
    const name = scopeUnit ? `${scopeUnit.name_hi} · ${scopeUnit.name_en}` : scope;
    tag.textContent = t('scope_label', { name: scope ? name : t('scope_all') });
  }
  if (scope) {
    fetch(`/api/regions/${encodeURIComponent(scope)}`)
      .then((res) => (res.ok ? res.json() : null))
      .then((unit) => {
        scopeUnit = unit;
        renderScope();
      })
      .catch(() => {});
  }

  if (!scope) showForwarded(conn, $('#best'));

  onLang(() => {
    renderQueue();
    renderLog();
    renderScope();
  });
  renderScope();
  renderQueue();
  renderLog();
  conn.start();
}

/** The scope claim (`sc`) of this page's token: read from the token itself, which the page already holds. */
function tokenScope(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(decodeURIComponent(escape(atob(payload))));
    return typeof claims.sc === 'string' ? claims.sc : '';
  } catch {
    return '';
  }
}
