// The lobby (issue 18): before a scheduled town hall goes live, the citizen page says when it starts (a countdown in
// IST), who speaks and what about, and reminds the citizen to come back (the calendar file, a WhatsApp share).
// Asking already works in the lobby (the ask card below it, moderated as usual) and the questions asked so far show
// as usual. When the leader goes live the `status` event turns the page live and the lobby goes away, no reload.
// A town hall without a programme has no lobby (GET /api/programmes/{id} answers 204).
import { getLang, onLang, t } from './i18n.js';
import { $ } from './ui.js';

let programme = null;
let status = '';
let timer = null;

/** Read the town hall's programme (public facts); the lobby shows while the status is `scheduled`. */
export async function loadLobby(th) {
  try {
    const res = await fetch(`/api/programmes/${encodeURIComponent(th)}`, { headers: { Accept: 'application/json' } });
    if (res.status !== 200) return; // 204: no programme
    programme = await res.json();
  } catch {
    return; // offline: the page works without the lobby
  }
  render();
}

/** The town hall's status changed (welcome, snapshot, `status` event, or the public facts). */
export function lobbyStatus(s) {
  if (s) status = s;
  render();
}

function span(ms) {
  const s = Math.floor(ms / 1000);
  const [d, h, m, sec] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60];
  const parts = [];
  if (d) parts.push(t('lobby.d', { n: d }));
  if (d || h) parts.push(t('lobby.h', { n: h }));
  parts.push(t('lobby.m', { n: m }));
  if (!d) parts.push(t('lobby.s', { n: sec }));
  return parts.join(' ');
}

function tick() {
  const left = programme.starts_ms - Date.now();
  $('#lobby-countdown').textContent = left > 0 ? t('lobby_in', { time: span(left) }) : t('lobby_soon');
}

function render() {
  const box = $('#lobby');
  const show = !!programme && status === 'scheduled' && !programme.cancelled;
  box.hidden = !show;
  clearInterval(timer);
  timer = null;
  if (!show) return;
  $('#lobby-when').textContent = getLang() === 'en' ? programme.when_en : programme.when_hi;
  $('#lobby-leader').textContent = programme.leader;
  $('#lobby-desc').textContent = programme.description;
  $('#lobby-desc').hidden = !programme.description;
  $('#lobby-ics').href = programme.ics_url;
  $('#lobby-share').href = programme.whatsapp_url;
  tick();
  timer = setInterval(tick, 1000);
}

onLang(render);
