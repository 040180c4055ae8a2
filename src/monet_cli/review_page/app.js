// monet review: the page. Plain JS, no build step, no network beyond the local server.
// Served by `monet review` (live: sliders re-render, accept writes the sidecar) or written by
// `monet review --static` (window.MONET_STATIC holds the data; images are files).
"use strict";

const STAGES = ["lighting", "color", "hsl"];
const TITLES = { lighting: "Lighting", color: "Colour", hsl: "HSL" };
const STATIC = window.MONET_STATIC || null;
const state = { photos: [], ops: [], current: -1, detail: null, values: {}, showBefore: false, timer: null, seq: 0 };

const $ = (id) => document.getElementById(id);

function say(text, error = false) {
  const m = $("message");
  m.textContent = text || "";
  m.className = error ? "error" : "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function imageUrl(id, view, size, adjustments) {
  if (STATIC) return `img/${id}-${view}.jpg`;
  let u = `/api/photos/${id}/image.jpg?view=${view}&size=${size}`;
  if (adjustments) u += `&adjustments=${encodeURIComponent(JSON.stringify(adjustments))}`;
  return u;
}

function stageStatus(p) {
  if (!p.planned) return "no plan yet";
  return STAGES.map((s) => `${TITLES[s]}: ${p.stages[s].status.replace("_", " ")}${p.stages[s].locked ? " 🔒" : ""}`).join(" · ");
}

async function load() {
  const data = STATIC || (await api("/api/photos"));
  state.photos = data.photos;
  state.ops = data.ops;
  $("where").textContent = `${state.photos.length} photo(s)${STATIC ? " (static copy: read only)" : ""}`;
  renderGrid();
}

function renderGrid() {
  const grid = $("grid");
  grid.innerHTML = "";
  state.photos.forEach((p, i) => {
    const card = document.createElement("div");
    card.className = "card";
    card.tabIndex = 0;
    card.dataset.id = String(p.id);
    const img = document.createElement("img");
    img.src = imageUrl(p.id, "after", 384);
    img.alt = p.name;
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = p.name;
    const status = document.createElement("div");
    status.className = "status";
    status.textContent = stageStatus(p);
    card.append(img, name, status);
    card.addEventListener("click", () => open(i));
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") open(i); });
    grid.append(card);
  });
}

async function open(i) {
  state.current = i;
  const p = state.photos[i];
  state.detail = STATIC ? p : await api(`/api/photos/${p.id}`);
  state.values = {};
  for (const s of STAGES) state.values[s] = Object.assign({}, state.detail.plan ? state.detail.plan.stages[s].adjustments : {});
  $("grid").hidden = true;
  $("detail").hidden = false;
  $("title").textContent = `${p.name} (${i + 1} of ${state.photos.length})`;
  $("before").src = imageUrl(p.id, "before", 1280);
  $("after").src = imageUrl(p.id, "after", 1280);
  renderStages();
  setSplit();
  say("");
}

function allValues() {
  const out = {};
  for (const s of STAGES) Object.assign(out, state.values[s]);
  return out;
}

function renderStages() {
  const box = $("stages");
  box.innerHTML = "";
  const plan = state.detail.plan;
  for (const s of STAGES) {
    const sp = plan ? plan.stages[s] : { status: "none", locked: false, reasoning: [], adjustments: {} };
    const div = document.createElement("div");
    div.className = "stage";
    div.dataset.stage = s;
    const h = document.createElement("h2");
    h.textContent = `${TITLES[s]} — ${sp.status.replace("_", " ")}${sp.locked ? " 🔒" : ""}`;
    div.append(h);
    for (const r of sp.reasoning || []) {
      const p = document.createElement("p");
      p.className = "reason";
      p.textContent = `${r.adjustment}: ${r.issue} → ${r.solution}`;
      div.append(p);
    }
    const ops = state.ops.filter((o) => o.stage === s);
    const used = ops.filter((o) => o.name in sp.adjustments);
    const rest = ops.filter((o) => !(o.name in sp.adjustments));
    used.forEach((o) => div.append(slider(s, o)));
    if (rest.length) {
      const more = document.createElement("details");
      const sum = document.createElement("summary");
      sum.textContent = `${rest.length} more`;
      more.append(sum);
      rest.forEach((o) => more.append(slider(s, o)));
      div.append(more);
    }
    if (!STATIC) {
      const bar = document.createElement("div");
      const accept = document.createElement("button");
      accept.textContent = "accept";
      accept.className = "accept";
      accept.title = "lock this stage with these values (as monet edit-stage)";
      accept.addEventListener("click", () => acceptStage(s));
      bar.append(accept);
      if (s !== "hsl") {
        const rp = document.createElement("button");
        rp.textContent = "re-plan later stages";
        rp.addEventListener("click", () => replan(s));
        bar.append(" ", rp);
      }
      div.append(bar);
    }
    box.append(div);
  }
  $("apply").disabled = !!STATIC || !plan;
}

function slider(stage, op) {
  const row = document.createElement("div");
  row.className = "op";
  const id = `op-${op.name}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = op.name;
  const input = document.createElement("input");
  input.type = "range";
  input.id = id;
  input.min = op.min;
  input.max = op.max;
  input.step = 1;
  input.value = state.values[stage][op.name] || 0;
  input.disabled = !!STATIC;
  input.dataset.op = op.name;
  const out = document.createElement("output");
  out.textContent = input.value;
  input.addEventListener("input", () => {
    const v = Number(input.value);
    out.textContent = String(v);
    if (v === 0) delete state.values[stage][op.name]; else state.values[stage][op.name] = v;
    row.classList.add("changed");
    rerender();
  });
  row.append(label, input, out);
  return row;
}

function rerender() {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    const seq = ++state.seq;
    const p = state.photos[state.current];
    const img = new Image();
    img.onload = () => { if (seq === state.seq) $("after").src = img.src; };
    img.onerror = () => say("the proxy could not be rendered", true);
    img.src = imageUrl(p.id, "after", 1280, allValues());
  }, 60);
}

async function acceptStage(stage) {
  const p = state.photos[state.current];
  try {
    state.detail = await api(`/api/photos/${p.id}/stages/${stage}`, { values: state.values[stage], version: state.detail.version });
    state.photos[state.current] = Object.assign(state.photos[state.current], { planned: true, stages: state.detail.stages });
    renderStages();
    say(`${TITLES[stage]} accepted and locked`);
  } catch (e) { say(e.message, true); }
}

async function replan(stage) {
  const p = state.photos[state.current];
  say("re-planning…");
  try {
    state.detail = await api(`/api/photos/${p.id}/replan`, { stage, version: state.detail.version });
    await open(state.current);
    say(`${TITLES[stage]} locked; the later stages were re-planned`);
  } catch (e) { say(e.message, true); }
}

async function applyPhoto() {
  const p = state.photos[state.current];
  say("rendering the full photo…");
  try {
    const r = await api(`/api/photos/${p.id}/apply`, { version: state.detail.version, force: $("force").checked });
    say(`wrote ${r.output} (${r.width}×${r.height}, ${r.bit_depth}-bit)`);
  } catch (e) { say(e.message, true); }
}

function setSplit() {
  const split = state.showBefore ? 100 : Number($("split").value);
  $("after").style.clipPath = `inset(0 0 0 ${split}%)`;
  $("divider").style.left = `${split}%`;
}

function move(step) {
  if (state.current < 0) return;
  const n = state.photos.length;
  open((state.current + step + n) % n);
}

function back() {
  $("detail").hidden = true;
  $("grid").hidden = false;
  state.current = -1;
  if (!STATIC) load().catch((e) => say(e.message, true));
}

document.addEventListener("keydown", (e) => {
  if (e.target && e.target.tagName === "INPUT" && e.target.type !== "range") return;
  if ($("detail").hidden) return;
  if (e.key === "ArrowRight") { e.preventDefault(); move(1); }
  else if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); }
  else if (e.key === " ") { e.preventDefault(); state.showBefore = !state.showBefore; setSplit(); }
  else if (e.key === "Escape") back();
});
$("split").addEventListener("input", () => { state.showBefore = false; setSplit(); });
$("toggle").addEventListener("click", () => { state.showBefore = !state.showBefore; setSplit(); });
$("prev").addEventListener("click", () => move(-1));
$("next").addEventListener("click", () => move(1));
$("back").addEventListener("click", back);
$("apply").addEventListener("click", applyPhoto);
load().catch((e) => say(e.message, true));
