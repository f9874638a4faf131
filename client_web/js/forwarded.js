// The questions local moderators forwarded, best per district (GET /api/townhalls/<th>/forwarded, docs/protocol.md
// section 7): shown to the leader and to town-hall-wide moderators, read every few seconds with the page's token.
import { num, onLang, t } from './i18n.js';
import { el } from './ui.js';

const EVERY_MS = 5000;

/** Fill `section` (with #best-list and #best-empty inside) and keep it current while the page is open. */
export function showForwarded(conn, section) {
  let districts = [];
  const list = section.querySelector('#best-list');
  const empty = section.querySelector('#best-empty');
  section.hidden = false;

  function render() {
    empty.hidden = districts.length > 0;
    list.replaceChildren(
      ...districts.map((d) =>
        el(
          'li',
          { dataset: { unit: d.code } },
          el('h3', { text: d.code ? `${d.name_hi || d.code} · ${d.name_en || ''} (${num(d.count)})` : t('best_unknown') }),
          el(
            'ol',
            { class: 'questions' },
            ...d.questions.map((q) =>
              el(
                'li',
                { class: 'question', dataset: { qid: q.qid } },
                el('p', { class: 'qtext', text: q.text }),
                el(
                  'p',
                  { class: 'qmeta' },
                  el('span', { class: 'who', text: [q.name, q.region].filter(Boolean).join(' · ') }),
                  q.votes ? el('span', { text: t('votes', { n: num(q.votes) }) }) : null,
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function load() {
    try {
      const token = await conn.getToken();
      const res = await fetch(`/api/townhalls/${encodeURIComponent(conn.th)}/forwarded`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (res.ok) districts = (await res.json()).districts || [];
    } catch {
      /* offline: the next round tries again */
    }
    render();
  }

  onLang(render);
  render();
  load();
  setInterval(load, EVERY_MS);
}
