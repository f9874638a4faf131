// Region picking on the citizen's join form: the unit of a join link, or district and constituency by autocomplete.
//
// A citizen who comes by a region link (/j/<code>?th=<id> → /?th=<id>&unit=<code>) is placed in that unit without
// typing: the form shows the unit's district and constituency, and chosenUnit() returns the code, which the join
// API checks against the tree and signs into the token (docs/protocol.md section 7). One without a link types a few
// letters of the district (Devanagari, Latin or Hinglish: "gaya", "muz", "पट") and picks it from the browser's own
// suggestion list (a <datalist>: native on phones, no script-drawn popup), then the constituency within it.
// Without a region tree on the node the search answers nothing, and the fields stay free text as before.

const DEBOUNCE_MS = 150;
const LIMIT = 8;

const linkUnit = new URLSearchParams(location.search).get('unit') || '';
const picked = { district: null, constituency: null }; // the unit chosen in each field, or null for free text
let linked = null; // the link's unit as the API describes it

async function getJson(path) {
  try {
    const res = await fetch(path, { headers: { Accept: 'application/json' } });
    return res.ok ? await res.json() : null;
  } catch {
    return null; // offline or no tree: the fields stay free text
  }
}

function label(unit) {
  return unit.name_hi === unit.name_en ? unit.name_hi : `${unit.name_hi} (${unit.name_en})`;
}

function attach(input, level, within, onPick = null) {
  if (!input) return;
  const list = document.createElement('datalist');
  list.id = `${input.id}-units`;
  input.after(list);
  input.setAttribute('list', list.id);
  let found = [];
  let timer = 0;
  let asked = '';
  const lookup = async () => {
    const q = input.value.trim();
    const scope = within();
    const key = `${q}|${scope}`;
    if (key === asked || (!q && !scope)) return;
    asked = key;
    const params = new URLSearchParams({ limit: String(LIMIT) });
    if (level) params.set('level', level);
    if (q) params.set('q', q);
    if (scope) params.set('within', scope);
    const answer = await getJson(`/api/regions?${params}`);
    if (key !== asked) return; // a newer keystroke's answer is on its way
    found = (answer && answer.units) || [];
    list.replaceChildren(
      ...found.map((unit) => {
        const option = document.createElement('option');
        option.value = unit.name_hi;
        option.label = unit.name_en;
        return option;
      }),
    );
  };
  input.addEventListener('input', () => {
    const value = input.value.trim();
    const unit = found.find((u) => u.name_hi === value || u.name_en === value || label(u) === value) || null;
    if (onPick) onPick(unit);
    else picked[level === 'district' ? 'district' : 'constituency'] = unit;
    clearTimeout(timer);
    timer = setTimeout(lookup, DEBOUNCE_MS);
  });
  input.addEventListener('focus', lookup); // the constituency field lists its district's constituencies at once
}

function showLinked(unit) {
  const district = document.getElementById('district');
  const constituency = document.getElementById('constituency');
  const chain = [...unit.path, unit];
  const d = chain.find((u) => u.level === 'district');
  const c = chain.find((u) => u.level === 'ac');
  for (const [input, u] of [
    [district, d],
    [constituency, c],
  ]) {
    if (input && u) {
      input.value = u.name_hi;
      input.readOnly = true;
    }
  }
  const form = document.getElementById('join-form');
  if (form) {
    const note = document.createElement('p');
    note.className = 'intro';
    note.id = 'region-unit';
    note.dataset.unit = unit.code;
    note.textContent = `📍 ${label(unit)}`;
    form.prepend(note);
  }
}

/** The region unit code to send with the join ('' when none). */
export function chosenUnit() {
  if (linked) return linked.code;
  const unit = picked.constituency || picked.district;
  return unit ? unit.code : '';
}

/**
 * The same autocomplete on any input, at any level (the leader's announcement target): returns a function that gives
 * the unit picked from the suggestions, or null while the text names none.
 */
export function unitPicker(input, level = '') {
  let unit = null;
  attach(input, level, () => '', (u) => {
    unit = u;
  });
  return () => unit;
}

async function init() {
  if (linkUnit) {
    linked = await getJson(`/api/regions/${encodeURIComponent(linkUnit)}`);
    if (linked) {
      showLinked(linked);
      return;
    }
  }
  attach(document.getElementById('district'), 'district', () => '');
  attach(document.getElementById('constituency'), 'ac', () => (picked.district ? picked.district.code : ''));
}

init();
