// The war-room dashboard: every live town hall with its audience and queue, and the health of nodes and Redis.
// Polls GET /api/dashboard every 2 s with the admin key (kept for this tab only, in sessionStorage).
// Questions per minute are computed here over the readings of the last minute (two readings 2 s apart would make
// every single question count as 30 a minute, and the figure would jump).

const KEY = "jansamvad.admin_key";
const EVERY_MS = 2000;
const WINDOW_MS = 60000;
const REACTION_EMOJI = { clap: "👏", heart: "❤️", thumbs_up: "👍", laugh: "😂", sad: "😢" };
// Each with its name too: without a colour-emoji font 👏 is an empty box.
const REACTION_NAME = { clap: "ताली", heart: "दिल", thumbs_up: "पसंद", laugh: "हँसी", sad: "दुख" };
const readings = new Map(); // town hall id -> [{questions, ts}], oldest first, spanning about WINDOW_MS
// The roll-up by region (GET /api/townhalls/{id}/rollup): per town hall, the unit shown ("" = the whole town hall)
// and the column its rows are sorted by. Read on every poll while its <details> is open.
const drill = new Map(); // town hall id -> {unit, sort}
const shown = new Map(); // town hall id -> the last roll-up read (drawn at once when the card is rebuilt)
const reading = new Set(); // town hall ids whose roll-up read is under way
// "People reached" (online viewers plus the people booth screens' volunteers count) beside the online viewers.
const COLUMNS = [
  ["viewers", "दर्शक · viewers"], ["reached", "पहुँच · people reached"], ["screens", "स्क्रीन · screens"],
  ["joins", "जुड़े · joined"], ["asked", "प्रश्न · asked"],
  ["approved", "स्वीकृत · approved"], ["reactions", "प्रतिक्रियाएँ · reactions"], ["votes", "मत · poll votes"],
];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function row(label, value, cls = "") {
  return el("div", { class: "wr-row" }, el("span", {}, label), el("strong", cls ? { class: cls } : {}, value));
}

function perMinute(hall, ts) {
  const seen = readings.get(hall.id) || [];
  seen.push({ questions: hall.questions, ts });
  while (seen.length > 2 && ts - seen[1].ts >= WINDOW_MS) seen.shift(); // keep one reading at least a minute old
  readings.set(hall.id, seen);
  const oldest = seen[0];
  if (seen.length < 2 || ts <= oldest.ts) return "…";
  return Math.round(((hall.questions - oldest.questions) * 60000) / (ts - oldest.ts));
}

function renderHall(hall, ts, opened) {
  const card = el("article", { class: "wr-card", "data-th": hall.id });
  card.append(
    el("h2", {}, hall.title, " ", el("span", { class: `wr-status ${hall.status}` }, hall.status)),
    el("div", { class: "wr-big", "data-viewers": hall.viewers }, hall.viewers.toLocaleString("hi-IN"), " ",
      el("small", {}, "दर्शक · viewers")),
    row("प्रश्न / मिनट · questions per minute", perMinute(hall, ts)),
    row("कतार · queue depth", hall.queue_depth, hall.queue_depth > 500 ? "wr-bad" : ""),
    row("स्वीकृति दर · approval rate", hall.approval_rate === null ? "—" : `${Math.round(hall.approval_rate * 100)} %`),
    row("प्रश्न · questions (approved / answered / rejected)",
      `${hall.questions} (${hall.approved} / ${hall.answered} / ${hall.rejected})`),
    row("प्रतिक्रियाएँ · reactions",
      Object.entries(hall.reactions).map(([k, v]) => `${REACTION_EMOJI[k] || ""} ${REACTION_NAME[k] || k} ${v}`)
        .join("  ") || "—"),
    row("स्लो मोड · slow mode", hall.slow_mode ? `${hall.slow_mode} s` : "—"),
  );
  const nodes = el("details", { "data-part": "nodes" }, el("summary", {}, "नोड अनुसार · by node"));
  for (const [node, n] of Object.entries(hall.viewers_by_node)) nodes.append(row(node, n));
  const regions = el("details", { "data-part": "regions" },
    el("summary", {}, "क्षेत्र अनुसार (इस नोड पर) · by region (this node)"));
  for (const [region, n] of Object.entries(hall.viewers_by_region_here)) regions.append(row(region, n));
  const rollup = el("details", { "data-part": "rollup" },
    el("summary", {}, "क्षेत्र रोल-अप (सभी नोड) · roll-up by region (all nodes)"), el("div", { class: "wr-rollup" }, "…"));
  for (const part of [nodes, regions, rollup]) part.open = opened.has(`${hall.id}:${part.dataset.part}`);
  if (rollup.open && shown.has(hall.id)) {
    rollup.querySelector(".wr-rollup").replaceChildren(renderRollup(hall.id, shown.get(hall.id), rollup));
  }
  rollup.addEventListener("toggle", () => { if (rollup.open) loadRollup(hall.id, rollup); });
  card.append(nodes, regions, rollup);
  return card;
}

async function loadRollup(th, part) {
  if (reading.has(th)) return;
  reading.add(th);
  const state = drill.get(th) || { unit: "", sort: "viewers" };
  drill.set(th, state);
  const query = state.unit ? `?unit=${encodeURIComponent(state.unit)}` : "";
  const key = sessionStorage.getItem(KEY);
  try {
    const response = await fetch(`/api/townhalls/${encodeURIComponent(th)}/rollup${query}`,
      { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const view = await response.json();
    if (drill.get(th).unit !== state.unit || (view.unit?.code || "") !== state.unit) return; // clicked elsewhere since
    shown.set(th, view);
    // The card may have been rebuilt meanwhile: fill the one on the page now.
    const target = document.querySelector(`article[data-th="${CSS.escape(th)}"] details[data-part="rollup"] .wr-rollup`);
    if (target) target.replaceChildren(renderRollup(th, view, part));
  } catch (error) {
    part.querySelector(".wr-rollup").replaceChildren(el("p", { class: "wr-bad" }, String(error)));
  } finally {
    reading.delete(th);
  }
}

function renderRollup(th, view, part) {
  const state = drill.get(th);
  const go = (unit) => {
    state.unit = unit;
    reading.delete(th); // a click wins over a read of the previous unit still under way
    loadRollup(th, part);
  };
  const crumbs = el("p", { class: "wr-crumbs" });
  const top = el("a", { href: "#", "data-unit": "" }, "सभी · all");
  top.addEventListener("click", (event) => { event.preventDefault(); go(""); });
  crumbs.append(top);
  for (const unit of view.path) {
    const link = el("a", { href: "#", "data-unit": unit.code }, `${unit.name_hi} (${unit.level_hi})`);
    link.addEventListener("click", (event) => { event.preventDefault(); go(unit.code); });
    crumbs.append(" › ", link);
  }
  const rows = [...view.rows].sort((a, b) => b[state.sort] - a[state.sort] || a.code.localeCompare(b.code));
  const most = Math.max(1, ...rows.map((r) => r[state.sort]));
  const head = el("tr", {}, el("th", {}, "इकाई · unit"));
  for (const [column, label] of COLUMNS) {
    const sorted = column === state.sort ? "descending" : "none";
    const header = el("th", { "data-sort": column, role: "button", tabindex: "0", "aria-sort": sorted }, label);
    header.addEventListener("click", () => {
      state.sort = column;
      header.closest(".wr-rollup").replaceChildren(renderRollup(th, view, part));
    });
    head.append(header);
  }
  const table = el("table", { class: "wr-table" }, el("thead", {}, head));
  const body = el("tbody");
  for (const r of rows) {
    const name = r.children
      ? el("a", { href: "#", "data-unit": r.code }, r.name_hi)
      : el("span", {}, r.name_hi);
    if (r.children) name.addEventListener("click", (event) => { event.preventDefault(); go(r.code); });
    const cell = el("td", {}, name, el("small", {}, ` ${r.name_en}`),
      el("div", { class: "wr-bar", style: `width:${Math.round((100 * r[state.sort]) / most)}%` }));
    for (const q of r.top_questions) cell.append(el("div", { class: "wr-q" }, `▲${q.votes} ${q.text}`));
    const tr = el("tr", { "data-code": r.code }, cell);
    for (const [column] of COLUMNS) tr.append(el("td", { "data-col": column }, r[column].toLocaleString("hi-IN")));
    body.append(tr);
  }
  table.append(body);
  const totals = el("p", { class: "wr-totals", "data-viewers": view.counts.viewers },
    COLUMNS.map(([column, label]) => `${label}: ${view.counts[column].toLocaleString("hi-IN")}`).join(" · "));
  return el("div", {}, crumbs, totals, table);
}

function render(report) {
  const redis = report.redis.configured
    ? (report.redis.healthy ? el("span", { class: "wr-ok" }, "Redis OK") : el("span", { class: "wr-bad" }, "Redis DOWN"))
    : el("span", {}, "embedded (no Redis)");
  const node = report.this_node;
  document.getElementById("wr-health").replaceChildren(
    redis, ` · ${report.answered_by}: ${node.ready ? "ready" : "NOT READY"}, ${node.connections} connections, `,
    `${node.slow_consumer_drops} slow-consumer drops, ${node.rejected_handshakes} rejected handshakes`,
  );
  const nodes = document.getElementById("wr-nodes");
  nodes.replaceChildren(el("p", {}, `नोड · nodes: ${report.nodes.map((n) => `${n.node} (${n.viewers})`).join(", ") || "—"}`));
  const halls = document.getElementById("wr-halls");
  // "<town hall id>:<nodes|regions>" of the <details> the reader has open (the cards are rebuilt on every poll)
  const opened = new Set([...halls.querySelectorAll("article[data-th] details[open]")]
    .map((part) => `${part.closest("article").dataset.th}:${part.dataset.part}`));
  halls.replaceChildren(...report.townhalls.map((hall) => renderHall(hall, report.ts, opened)));
  for (const part of halls.querySelectorAll('details[data-part="rollup"][open]')) {
    loadRollup(part.closest("article").dataset.th, part);
  }
  if (!report.townhalls.length) halls.append(el("p", {}, "कोई सक्रिय टाउन हॉल नहीं · no active town halls"));
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return showLogin();
  try {
    const response = await fetch("/api/dashboard", { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      return showLogin("गलत की · wrong key");
    }
    if (response.ok) {
      render(await response.json());
    } else {
      // 429 (too many wrong keys from this address), 503 (a draining node): say so, keep the key, try again.
      const body = await response.json().catch(() => ({}));
      showTrouble(`HTTP ${response.status} ${body.error || ""} ${body.msg || ""}`.trim());
    }
  } catch (error) {
    showTrouble(`offline: ${error}`);
  }
  setTimeout(poll, EVERY_MS);
}

function showTrouble(text) {
  document.getElementById("wr-health").replaceChildren(el("span", { class: "wr-bad" }, text));
}

function showLogin(message = "") {
  const form = document.getElementById("wr-login");
  form.hidden = false;
  document.getElementById("wr-error").textContent = message;
}

document.getElementById("wr-login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("wr-key").value.trim());
  document.getElementById("wr-login").hidden = true;
  poll();
});

const fromFragment = new URLSearchParams(location.hash.slice(1)).get("key");
if (fromFragment) {
  sessionStorage.setItem(KEY, fromFragment);
  history.replaceState(null, "", location.pathname);
}
poll();
