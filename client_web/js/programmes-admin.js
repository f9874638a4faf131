// The war room's programmes (issue 18): schedule a town hall ahead, edit its facts, cancel it. Bilingual like the
// rest of the dashboard. Uses the admin key the dashboard keeps for this tab (sessionStorage); the list comes from the
// public GET /api/programmes, changes go to POST /api/programmes[/{id}[/cancel]] (docs/protocol.md section 7).
const KEY = "jansamvad.admin_key";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function send(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.msg || data.error || `HTTP ${res.status}`);
  return data;
}

function say(text, bad = false) {
  const out = $("#pg-result");
  out.textContent = text;
  out.className = bad ? "wr-bad" : "wr-ok";
}

function fillForm(p) {
  const form = $("#pg-form");
  form.dataset.th = p ? p.th : "";
  form.title.value = p ? p.title : "";
  form.title.disabled = !!p; // the title is the town hall's; a programme edits its schedule
  form.lang.disabled = !!p;
  form.leader.value = p ? p.leader : "";
  form.starts.value = p ? p.starts_at.slice(0, 16) : ""; // "2026-12-04T19:00" in IST
  form.duration.value = p ? p.duration_min : 60;
  form.description.value = p ? p.description : "";
  $("#pg-submit").textContent = p ? "बदलें · Save changes" : "तय करें · Schedule";
  $("#pg-new").hidden = !p;
}

async function load() {
  const list = $("#pg-list");
  let data;
  try {
    data = await (await fetch("/api/programmes", { cache: "no-store" })).json(); // not the 5 s public cache
  } catch {
    return;
  }
  list.replaceChildren();
  for (const p of [...data.live, ...data.upcoming]) {
    const item = el("li", { "data-th": p.th },
      el("strong", {}, p.title), " · ", p.when_hi, " · ", p.leader, " ",
      el("span", { class: `wr-status ${p.status}` }, p.cancelled ? "रद्द · cancelled" : p.status), " ");
    if (!p.cancelled && p.status === "scheduled") {
      const edit = el("button", { type: "button", class: "pg-edit" }, "बदलें · Edit");
      edit.addEventListener("click", () => fillForm(p));
      const cancel = el("button", { type: "button", class: "pg-cancel" }, "रद्द करें · Cancel");
      cancel.addEventListener("click", async () => {
        if (cancel.dataset.armed !== "1") {
          cancel.dataset.armed = "1";
          cancel.textContent = "पक्का? · Sure?";
          return;
        }
        try {
          await send(`/api/programmes/${encodeURIComponent(p.th)}/cancel`);
          say(`रद्द · cancelled: ${p.title}`);
        } catch (err) {
          say(err.message, true);
        }
        load();
      });
      item.append(edit, " ", cancel);
    }
    list.append(item);
  }
  if (!list.children.length) list.append(el("li", {}, "कोई कार्यक्रम तय नहीं · nothing scheduled"));
}

function init() {
  const form = $("#pg-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const th = form.dataset.th;
    const body = {
      leader: form.leader.value,
      starts_at: form.starts.value, // no offset: the node reads it as IST
      duration_min: Number(form.duration.value),
      description: form.description.value,
    };
    try {
      const p = th
        ? await send(`/api/programmes/${encodeURIComponent(th)}`, body)
        : await send("/api/programmes", { ...body, title: form.title.value, lang: form.lang.value });
      say(`${th ? "बदला · saved" : "तय हुआ · scheduled"}: ${p.title} · ${p.when_hi} · ${p.join_url}`);
      fillForm(null);
    } catch (err) {
      say(err.message, true);
    }
    load();
  });
  $("#pg-new").addEventListener("click", () => fillForm(null));
  $("#wr-programmes").addEventListener("toggle", (ev) => ev.target.open && load());
  fillForm(null);
}

init();
