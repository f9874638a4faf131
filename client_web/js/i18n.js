// Languages: Hindi by default, English switchable. All strings live in /i18n/<lang>.js; the HTML carries only
// keys (data-i18n="key", data-i18n-ph / -label / -title for placeholder, aria-label and title).
// Hindi comes with the page; another language is fetched only when someone picks it (every byte counts on 2G).
import hi from '../i18n/hi.js';

const LANGS = ['hi', 'en'];
const DICTS = { hi };
const LANG_KEY = 'jansamvad.lang';
const listeners = [];

function initial() {
  const q = new URLSearchParams(location.search).get('lang');
  if (LANGS.includes(q)) return q;
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (LANGS.includes(saved)) return saved;
  } catch {
    /* storage disabled */
  }
  return 'hi';
}

async function load(code) {
  if (!DICTS[code]) DICTS[code] = (await import(`../i18n/${code}.js`)).default;
  return DICTS[code];
}

let lang = initial();
if (lang !== 'hi') {
  // Until the dictionary arrives, t() falls back to Hindi; then everything is redrawn in the chosen language.
  load(lang).then(
    () => {
      applyI18n();
      for (const fn of listeners) fn(lang);
    },
    () => {
      lang = 'hi';
    },
  );
}

/** True when the person chose a language (link or earlier switch); otherwise the town hall's language may apply. */
export function chosen() {
  try {
    return new URLSearchParams(location.search).has('lang') || localStorage.getItem(LANG_KEY) !== null;
  } catch {
    return false;
  }
}

export const getLang = () => lang;

/** t('viewers', {n: 5}) -> "5 दर्शक". A missing key falls back to Hindi, then to the key itself. */
export function t(key, vars) {
  // (No `?.` / `??`: the booth screen loads this module on older TV browsers.)
  const dict = DICTS[lang];
  let s = dict && dict[key] !== undefined ? dict[key] : hi[key] !== undefined ? hi[key] : key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

/** Numbers with Indian digit grouping (1,00,000) in both languages. */
export const num = (n) => (typeof n === 'number' ? n.toLocaleString('en-IN') : '–');

export function applyI18n(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-ph]')) node.placeholder = t(node.dataset.i18nPh);
  for (const node of root.querySelectorAll('[data-i18n-label]')) node.setAttribute('aria-label', t(node.dataset.i18nLabel));
  for (const node of root.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
  document.documentElement.lang = lang;
}

/** fn() runs after every language switch (views re-render their dynamic text). */
export const onLang = (fn) => listeners.push(fn);

export async function setLang(next) {
  if (!LANGS.includes(next) || next === lang) return;
  try {
    await load(next);
  } catch {
    return; // offline and not cached: stay in the current language
  }
  lang = next;
  try {
    localStorage.setItem(LANG_KEY, lang);
  } catch {
    /* storage disabled: this page only */
  }
  applyI18n();
  for (const fn of listeners) fn(lang);
}

/** Wire a button that toggles hi <-> en. */
export function langButton(button) {
  button.addEventListener('click', () => setLang(lang === 'hi' ? 'en' : 'hi'));
}
