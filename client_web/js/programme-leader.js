// The leader's programme card (issue 18): when the town hall starts and what the programme page says about it, and
// a form to correct the time, the speaker's name or the description (POST /api/programmes/{id} with this page's
// leader token; the node checks that the token is a leader's of this town hall). Hidden without a programme.
import { getLang, onLang, t } from './i18n.js';
import { $, params } from './ui.js';

const { th } = params();
let programme = null;

function token() {
  try {
    return sessionStorage.getItem(`jansamvad.leader.${th}`) || ''; // where staff.js keeps it for this tab
  } catch {
    return '';
  }
}

function render() {
  const box = $('#programme');
  box.hidden = !programme;
  if (!programme) return;
  $('#prog-when').textContent = getLang() === 'en' ? programme.when_en : programme.when_hi;
  $('#prog-edit').hidden = programme.cancelled || programme.status === 'ended';
}

function fill() {
  $('#prog-leader').value = programme.leader;
  $('#prog-starts').value = programme.starts_at.slice(0, 16); // IST, as the node gives it
  $('#prog-desc').value = programme.description;
}

async function load() {
  if (!th) return;
  try {
    const res = await fetch(`/api/programmes/${encodeURIComponent(th)}`, { cache: 'no-store' });
    if (res.status !== 200) return; // 204: no programme
    programme = await res.json();
  } catch {
    return;
  }
  fill();
  render();
}

$('#prog-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('#prog-result');
  try {
    const res = await fetch(`/api/programmes/${encodeURIComponent(th)}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        leader: $('#prog-leader').value,
        starts_at: $('#prog-starts').value, // no offset: the node reads it as IST
        description: $('#prog-desc').value,
      }),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.msg || data.error || `HTTP ${res.status}`);
    programme = data;
    out.textContent = t('prog_saved');
    fill();
    render();
  } catch (err) {
    out.textContent = t('prog_failed', { why: err.message });
  }
});

onLang(render);
load();
