// Setup pages (integrator): live view with ROIs, recipe editor with ROI drawing, try, I/O monitor,
// config versions, model versions. Every change goes through /api/setup/* with the session's CSRF token.
"use strict";
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const ZONE = document.querySelector('meta[name="station-zone"]').content;
// The overlay's check colours (Okabe–Ito), in the same order as edge_inspect/inspection/overlay.py.
const COLOURS = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000"];
const $ = (id) => document.getElementById(id);

async function api(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": CSRF } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(url, init);
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  return { ok: r.ok, status: r.status, data };
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function showProblems(box, res, okText) {
  box.replaceChildren();
  if (res.ok) { box.append(el("p", {}, okText(res.data))); return; }
  box.append(el("p", { class: "problem" }, res.data.error || `HTTP ${res.status}`));
  if (res.data.problems) {
    const ul = el("ul", { class: "problem", id: "problems" });
    for (const p of res.data.problems) ul.append(el("li", {}, p));
    box.append(ul);
  }
}

function savedText(d) {
  let text = `Saved as version ${d.version} (${d.sha256.slice(0, 12)}).`;
  text += d.applied.length ? ` Applied now: ${d.applied.join(", ")}.` : " Nothing to apply.";
  if (d.restart_needed.length) text += ` Needs a restart: ${d.restart_needed.join(", ")}.`;
  return text;
}

// -- shared: the file changed on disk, restart needed ---------------------------------------------
let config = null;
let baseSha = null;  // the file version the editor was loaded from: a save from an older one is refused (409)
async function loadConfig(asBase = false) {
  const r = await api("GET", "/api/setup/config");
  if (!r.ok) return null;
  config = r.data;
  if (asBase) baseSha = config.sha256;
  const banner = $("disk-banner");
  if (banner) {
    banner.hidden = !config.changed_on_disk;
    $("disk-text").textContent = config.changed_on_disk
      ? `${config.path} was changed on disk and is not applied (running ${config.running.slice(0, 12)}, on disk ${config.sha256.slice(0, 12)}).` : "";
  }
  const note = $("restart-note");
  if (note) {
    note.hidden = !config.restart_needed.length;
    note.textContent = `Saved but waiting for a restart of the daemon: ${config.restart_needed.join(", ")}`;
  }
  return config;
}

async function diskAction(action) {
  const r = await api("POST", "/api/setup/disk", { action });
  const box = $("save-result");
  if (box) showProblems(box, r, savedText);
  await loadConfig();
  if (r.ok) refreshPage();
}

let refreshPage = () => {};

// -- recipe editor ---------------------------------------------------------------------------------
const KIND_FIELDS = {
  point: [["prompt", "text", "Prompt"], ["min", "number", "min"], ["max", "number", "max"]],
  count: [["prompt", "text", "Prompt"], ["expected", "number", "expected"]],
  qa: [["question", "text", "Question"], ["expect", ["yes", "no"], "expect"], ["min_margin", "number", "min_margin"],
       ["min_mass", "number", "min_mass"], ["on_uncertain", ["fail", "error", "pass"], "on uncertain"]],
};
let recipes = [], current = 0, drawing = null, dragging = null;

function recipe() { return recipes[current]; }

function renderRecipeSelect() {
  const select = $("recipe");
  select.replaceChildren(...recipes.map((r, i) => el("option", { value: i }, `${r.number} · ${r.name}`)));
  select.value = current;
  $("recipe-name").value = recipe().name;
}

function field(check, idx, [key, type, label]) {
  const id = `c${idx}-${key}`;
  let input;
  if (Array.isArray(type)) {
    input = el("select", { id, "data-key": key }, ...type.map((v) => el("option", { value: v }, v)));
    input.value = check[key] ?? (key === "on_uncertain" ? "fail" : type[0]);
  } else {
    input = el("input", { id, type, "data-key": key, class: type === "text" ? "prompt" : null,
                          step: key.startsWith("min_m") ? "0.01" : "1" });
    input.value = check[key] ?? ({ min_margin: 0.2, min_mass: 0.5 }[key] ?? (type === "number" ? 0 : ""));
  }
  input.addEventListener("input", () => {
    check[key] = type === "number" ? Number(input.value) : input.value;
  });
  if (check[key] === undefined) check[key] = type === "number" ? Number(input.value) : input.value;
  return el("label", { for: id, class: type === "text" ? "wide" : null }, `${label} `, input);
}

function renderChecks() {
  const box = $("checks");
  box.replaceChildren();
  recipe().checks.forEach((check, idx) => {
    const colour = COLOURS[idx % COLOURS.length];
    const name = el("input", { id: `c${idx}-name`, value: check.name, maxlength: 40 });
    name.addEventListener("input", () => { check.name = name.value; });
    const kind = el("select", { id: `c${idx}-kind` }, ...Object.keys(KIND_FIELDS).map((k) => el("option", { value: k }, k)));
    kind.value = check.kind;
    kind.addEventListener("change", () => {
      const keep = { name: check.name, kind: kind.value, roi: check.roi, crop: check.crop };
      const text = check.prompt || check.question || "";
      Object.keys(check).forEach((k) => delete check[k]);
      Object.assign(check, keep, kind.value === "qa" ? { question: text, expect: "yes" } : { prompt: text });
      if (kind.value === "count") check.expected = 1;
      if (!check.roi) delete check.roi;
      if (!check.crop) delete check.crop;
      renderChecks();
    });
    const roiText = check.roi ? `ROI: ${check.roi.length} corners` : "ROI: whole frame";
    const crop = el("input", { type: "checkbox", id: `c${idx}-crop` });
    crop.checked = Boolean(check.crop);
    crop.disabled = !check.roi;
    crop.addEventListener("change", () => { if (crop.checked) check.crop = true; else delete check.crop; });
    const fs = el("fieldset", { class: "check", style: `border-left-color: ${colour}`, "data-idx": idx },
      el("legend", {}, `Check ${idx + 1}`),
      el("label", { for: `c${idx}-name` }, "Name ", name), el("label", { for: `c${idx}-kind` }, "Kind ", kind),
      ...KIND_FIELDS[check.kind].map((f) => field(check, idx, f)),
      el("div", {},
        el("span", { class: "note", id: `c${idx}-roi` }, roiText), " ",
        el("label", { for: `c${idx}-crop` }, crop, " model sees only the ROI's box"), " ",
        el("button", { type: "button", id: `c${idx}-draw`, onclick: () => startDrawing(idx) }, "Draw ROI"), " ",
        el("button", { type: "button", id: `c${idx}-clear`, onclick: () => { delete check.roi; delete check.crop; renderChecks(); } },
           "Whole frame"), " ",
        el("button", { type: "button", id: `c${idx}-remove`, onclick: () => { recipe().checks.splice(idx, 1); renderChecks(); } },
           "Remove check")));
    box.append(fs);
  });
  drawRois();
}

function drawRois() {
  const svg = $("rois");
  if (!svg) return;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  recipe().checks.forEach((check, idx) => {
    const pts = drawing && drawing.idx === idx ? drawing.points : check.roi;
    if (!pts || !pts.length) return;
    const colour = COLOURS[idx % COLOURS.length];
    const poly = document.createElementNS(ns, drawing && drawing.idx === idx ? "polyline" : "polygon");
    poly.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    poly.setAttribute("fill", drawing && drawing.idx === idx ? "none" : colour + "33");
    poly.setAttribute("stroke", colour);
    poly.setAttribute("stroke-width", "0.004");
    poly.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(poly);
    pts.forEach((p, k) => {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", p[0]); c.setAttribute("cy", p[1]); c.setAttribute("r", "0.012");
      c.setAttribute("fill", colour); c.setAttribute("stroke", "#000"); c.setAttribute("stroke-width", "0.002");
      c.dataset.idx = idx; c.dataset.corner = k;
      c.classList.add("corner");
      svg.append(c);
    });
  });
}

function fraction(event) {
  const box = $("frame").getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [Number(clamp((event.clientX - box.left) / box.width).toFixed(4)),
          Number(clamp((event.clientY - box.top) / box.height).toFixed(4))];
}

function startDrawing(idx) {
  drawing = { idx, points: [] };
  $("view").classList.add("drawing");
  $("draw-hint").hidden = false;
  $("draw-done").hidden = false;
  drawRois();
}

function finishDrawing() {
  if (!drawing) return;
  const check = recipe().checks[drawing.idx];
  if (drawing.points.length >= 3) check.roi = drawing.points;
  drawing = null;
  $("view").classList.remove("drawing");
  $("draw-hint").hidden = true;
  $("draw-done").hidden = true;
  renderChecks();
}

function setupView() {
  const svg = $("rois");
  svg.addEventListener("pointerdown", (event) => {
    const corner = event.target.closest && event.target.closest("circle.corner");
    if (corner) {  // drag an existing corner (mouse or finger)
      dragging = { idx: Number(corner.dataset.idx), corner: Number(corner.dataset.corner) };
      svg.setPointerCapture(event.pointerId);
      event.preventDefault();
      return;
    }
    if (drawing) { drawing.points.push(fraction(event)); drawRois(); event.preventDefault(); }
  });
  svg.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const pts = drawing && drawing.idx === dragging.idx ? drawing.points : recipe().checks[dragging.idx].roi;
    pts[dragging.corner] = fraction(event);
    drawRois();
  });
  svg.addEventListener("pointerup", () => { if (dragging) { dragging = null; renderChecks(); } });
  $("draw-done").addEventListener("click", finishDrawing);
  let timer = null;
  const refresh = () => {
    if (!$("live").checked) return;
    const img = new Image();
    img.onload = () => { $("frame").src = img.src; $("camera-problem").textContent = ""; };
    img.onerror = () => { $("camera-problem").textContent = "No frame from the camera (see the HMI's alarms)."; };
    img.src = `/api/setup/frame.jpg?t=${Date.now()}`;
  };
  timer = setInterval(refresh, 1000);
  window.addEventListener("pagehide", () => clearInterval(timer));
}

function edited() {
  const r = recipe();
  r.name = $("recipe-name").value;
  return JSON.parse(JSON.stringify(r));
}

function renderTry(box, res) {
  box.replaceChildren();
  if (!res.ok) { box.append(el("p", { class: "problem" }, res.data.error || `HTTP ${res.status}`)); return; }
  const d = res.data;
  box.append(el("p", {}, el("b", { id: "try-verdict" }, d.verdict), d.error ? ` · ${d.error}` : ""));
  const table = el("table", { class: "list", id: "try-checks" },
    el("tr", {}, ...["check", "answer", "points", "p_yes", "margin", "status", "reason"].map((h) => el("th", {}, h))));
  for (const c of d.checks) {
    table.append(el("tr", {}, el("td", {}, c.name), el("td", {}, c.answer), el("td", {}, c.points.map((p) => `(${p[0].toFixed(3)}, ${p[1].toFixed(3)})`).join(" ")),
      el("td", {}, c.p_yes === null ? "" : c.p_yes.toFixed(3)), el("td", {}, c.margin === null ? "" : c.margin.toFixed(3)),
      el("td", {}, c.status), el("td", {}, c.reason)));
  }
  box.append(table, el("img", { class: "try-overlay", id: "try-overlay", src: d.overlay, alt: "overlay of the try" }));
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/bmp", "image/tiff", "image/webp"];

// The file itself is the body (no base64, no JSON for the station to parse), the recipe in the query;
// a recipe too long for a request head (16 KiB) goes the JSON way, the image as a data: URL.
async function tryUpload(recipeValue, file) {
  const url = "/api/setup/try?" + new URLSearchParams({ recipe: JSON.stringify(recipeValue) });
  if (url.length > 12000) return api("POST", "/api/setup/try", { recipe: recipeValue, image: await readFile(file) });
  const type = IMAGE_TYPES.includes(file.type) ? file.type : "application/octet-stream";
  const r = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": CSRF, "Content-Type": type }, body: file });
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  return { ok: r.ok, status: r.status, data };
}

async function setupRecipes() {
  const c = await loadConfig(true);
  if (!c) return;
  recipes = c.recipes;
  const active = recipes.findIndex((r) => r.number === c.recipe_active);
  current = active >= 0 ? active : 0;
  renderRecipeSelect();
  renderChecks();
  refreshPage = async () => { const again = await loadConfig(true); recipes = again.recipes; renderRecipeSelect(); renderChecks(); };
  $("recipe").addEventListener("change", () => { finishDrawing(); current = Number($("recipe").value); renderRecipeSelect(); renderChecks(); });
  $("recipe-name").addEventListener("input", () => { recipe().name = $("recipe-name").value; });
  $("add-check").addEventListener("click", () => {
    recipe().checks.push({ name: `check${recipe().checks.length + 1}`, kind: "point", prompt: "Point to any defects.", min: 0, max: 0 });
    renderChecks();
  });
  $("save").addEventListener("click", async () => {
    finishDrawing();
    edited();
    const r = await api("POST", "/api/setup/config", { recipes, base_sha256: baseSha, comment: $("comment").value });
    showProblems($("save-result"), r, savedText);
    if (r.ok) await refreshPage();
  });
  $("try-frame").addEventListener("click", async () => {
    $("try-result").textContent = "Running…";
    renderTry($("try-result"), await api("POST", "/api/setup/try", { recipe: edited() }));
  });
  $("try-upload").addEventListener("click", async () => {
    const file = $("upload").files[0];
    if (!file) { $("try-result").textContent = "Choose an image file first."; return; }
    $("try-result").textContent = "Running…";
    renderTry($("try-result"), await tryUpload(edited(), file));
  });
  setupView();
}

// -- I/O monitor -------------------------------------------------------------------------------------
async function setupIo() {
  await loadConfig();
  const tbody = document.querySelector("#io tbody");
  const poll = async () => {
    const r = await api("GET", "/api/setup/io");
    if (!r.ok) return;
    $("plc-status").textContent = r.data.plc;
    tbody.replaceChildren(...r.data.signals.map((s) => el("tr", { id: `io-${s.name}` },
      el("td", {}, s.name), el("td", {}, s.table), el("td", {}, s.count > 1 ? `${s.address}–${s.address + s.count - 1}` : s.address),
      el("td", {}, s.type), el("td", {}, s.direction === "plc_to_appliance" ? "PLC → appliance" : "appliance → PLC"),
      el("td", { class: "value" }, String(s.value ?? ""), s.meaning ? el("small", { class: "meaning" }, ` · ${s.meaning}`) : ""),
      el("td", {}, s.description))));
  };
  await poll();
  const timer = setInterval(poll, 500);
  window.addEventListener("pagehide", () => clearInterval(timer));
}

// -- config and versions ---------------------------------------------------------------------------------
function localTime(unix) {
  return new Date(unix * 1000).toLocaleString("sv-SE", { timeZone: ZONE });
}

async function setupConfig() {
  const load = async () => {
    const c = await loadConfig(true);
    if (!c) return;
    $("config-path").textContent = c.path || "";
    $("yaml").value = c.yaml;
    const r = await api("GET", "/api/setup/versions");
    const tbody = document.querySelector("#versions tbody");
    tbody.replaceChildren(...r.data.versions.map((v) => el("tr", { "data-version": v.id },
      el("td", {}, String(v.id)), el("td", {}, localTime(v.ts_unix)), el("td", {}, v.author), el("td", {}, v.source),
      el("td", {}, el("code", {}, v.sha256.slice(0, 12)), v.sha256 === r.data.running ? " (running)" : ""),
      el("td", {}, v.comment || ""),
      el("td", {},
        el("button", { type: "button", class: "show-diff", onclick: async () => {
          const d = await api("GET", `/api/setup/versions/${v.id}`);
          $("diff").textContent = d.ok ? (d.data.diff || "(no change)") : d.data.error;
        } }, "Diff"), " ",
        v.sha256 === r.data.running ? "" : el("button", { type: "button", class: "rollback", onclick: async () => {
          if (!confirm(`Roll back to version ${v.id}? It is applied at once.`)) return;
          const res = await api("POST", `/api/setup/versions/${v.id}/rollback`);
          showProblems($("save-result"), res, savedText);
          await load();
        } }, "Roll back")))));
  };
  refreshPage = load;
  await load();
  $("save-yaml").addEventListener("click", async () => {
    const r = await api("POST", "/api/setup/config", { yaml: $("yaml").value, base_sha256: baseSha, comment: $("comment").value });
    showProblems($("save-result"), r, savedText);
    if (r.ok) await load();
  });
}

// -- model versions (the model store the station follows) -----------------------------------------
function followText(running, f) {
  if (!f) return `Runs ${running.slice(0, 12)}; model.bundle names no alias of the model store.`;
  let text = `Runs ${running.slice(0, 12)}, following ${f.alias}: ${f.state}`;
  if (f.watch) text += ` (${f.watch.parts} of ${f.watch.of} parts watched)`;
  if (f.last_change) text += `. Last change: ${f.last_change.reason}, ${f.last_change.previous.slice(0, 12)} → ${f.last_change.version.slice(0, 12)}`;
  const failed = Object.entries(f.failed || {});
  if (failed.length) text += `. Not loaded: ${failed.map(([v, why]) => `${v} (${why})`).join("; ")}`;
  return text + ".";
}

function isoTime(iso) {  // the store's UTC times in the station's zone, as the other setup pages show times
  return iso && !Number.isNaN(Date.parse(iso)) ? localTime(Date.parse(iso) / 1000) : (iso || "");
}

function pct(x) { return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`; }

function unfamiliarText(n) {  // parts production's unfamiliar-frame guard judged: in no agreement
  return n ? ` (${n} unfamiliar to production, not compared)` : "";
}

function shadowText(now, run) {
  if (now.state === "starting") return "Shadow: starting (loading the version in its own process).";
  if (now.state === "running") {
    const bounds = [now.parts ? `${now.parts} parts` : "", now.ends_at ? `until ${localTime(now.ends_at)}` : ""].filter(Boolean).join(", ");
    return `Shadow running: ${now.version} judges live frames (${now.scheduling}); ${now.shadowed} shadowed, ` +
      `${now.skipped} skipped (line busy ${now.skipped_line}, shadow busy ${now.skipped_shadow}), ` +
      `${now.disagreements} disagreements, agreement ${pct(now.agreement)}${unfamiliarText(now.unfamiliar)}; ends after ${bounds}.`;
  }
  if (run) {
    const when = run.ended_at ? `ended ${localTime(run.ended_at)}: ${run.end_reason}` : "left open";
    return `Shadow off. Last run ${run.id} of ${run.version.slice(0, 12)} ${when}. It shadowed ${run.shadowed} parts, ` +
      `skipped ${run.skipped_line + run.skipped_shadow} (line busy ${run.skipped_line}, shadow busy ${run.skipped_shadow}), ${run.disagreements} disagreements, agreement ${pct(run.agreement)}${unfamiliarText(run.unfamiliar)}.`;
  }
  return "Shadow off. No version has been shadowed on this station.";
}

function renderShadow(d) {
  const run = d.run;
  $("shadow-state").textContent = shadowText(d.now, run);
  $("shadow-stop").disabled = !["running", "starting"].includes(d.now.state);
  const cost = run ? run.cost : null;
  $("shadow-cost").textContent = cost && run.judged ? `Cost: the shadow takes ${cost.shadow_cpu_ms_p50} ms of CPU per part (p50; ${cost.shadow_ms_p50} ms from frame to verdict, stopped while production inspects); ` +
    `production's cycle p50 ${cost.cycle_ms_p50_during} ms (p95 ${cost.cycle_ms_p95_during}) over ${cost.parts_during} parts during the run, ` +
    `${cost.cycle_ms_p50_before ?? "–"} ms (p95 ${cost.cycle_ms_p95_before ?? "–"}) over the ${cost.parts_before} parts before it.` : "";
  const rows = run ? [...run.checks.map((c) => el("tr", {}, el("td", {}, c.name), el("td", {}, String(c.judged)),
    el("td", {}, String(c.agree)), el("td", {}, pct(c.agreement)))),
    el("tr", { class: "shadow-verdict" }, el("td", {}, el("strong", {}, "verdict")), el("td", {}, String(run.judged)),
      el("td", {}, String(Math.round((run.verdict_agreement || 0) * run.judged))), el("td", {}, pct(run.verdict_agreement)))] : [];
  document.querySelector("#shadow-checks tbody").replaceChildren(...(run && run.judged ? rows : []));
  document.querySelector("#shadow-disagreements tbody").replaceChildren(...(run ? run.disagreement_list : []).map((x) =>
    el("tr", { "data-inspection": x.inspection_id },
      el("td", {}, el("a", { href: `/review/${x.inspection_id}` }, `#${x.inspection_id}`)), el("td", {}, localTime(x.ts_unix)),
      el("td", {}, x.production_verdict || "–"), el("td", {}, x.verdict), el("td", {}, x.differing))));
}

async function setupShadow() {
  const load = async () => {
    const r = await api("GET", "/api/models/shadow");
    if (!r.ok) { $("shadow-state").textContent = r.data.error || `HTTP ${r.status}`; return; }
    renderShadow(r.data);
  };
  const started = (d) => d.now.state === "running" ? `Started: ${d.now.version} judges in shadow.` : `Asked for (request ${d.request.seq}); ${d.now.last ? d.now.last.reason : d.now.state}.`;
  $("shadow-start").addEventListener("click", async () => {
    $("shadow-start").disabled = true;
    const body = { version: $("shadow-version").value.trim(), parts: Number($("shadow-parts").value), hours: Number($("shadow-hours").value) };
    showProblems($("shadow-result"), await api("POST", "/api/models/shadow/start", body), started);
    $("shadow-start").disabled = false;
    await load();
  });
  $("shadow-stop").addEventListener("click", async () => {
    showProblems($("shadow-result"), await api("POST", "/api/models/shadow/stop", {}), (d) => d.request ? `Stopped: ${d.now.last ? d.now.last.reason : d.now.state}.` : `Nothing to stop: ${d.nothing}.`);
    await load();
  });
  await load();
  setInterval(load, 3000);
}

function gateCell(v, production) {
  const parts = [];
  if (v.gate) {
    const current = v.gate.against === production;  // a gate against an earlier production no longer counts
    parts.push(el("a", { href: `/setup/models/gate/${v.id}`, class: v.gate.passed ? "" : "problem",
      title: `against ${(v.gate.against || "").slice(0, 12)}` },
      `${v.gate.passed ? "passed" : "failed"}${current ? "" : " (earlier production)"}`), " ");
  } else if (!v.aliases.includes("production")) parts.push("none ");
  return parts;
}

function runText(run) {
  if (!run) return null;
  if (run.state === "running") {
    return [`Gate of ${(run.version || "").slice(0, 12)} running: ${run.phase} `,
      el("progress", { max: run.total || 1, value: run.done || 0, "aria-label": "gate progress" })];
  }
  if (run.state === "failed") return [el("span", { class: "problem" }, `Gate of ${(run.version || "").slice(0, 12)} did not finish: ${run.error || "?"}`)];
  return [`Gate of ${(run.version || "").slice(0, 12)} ${run.passed ? "passed" : "failed"}: `,
    el("a", { href: `/setup/models/gate/${run.version}` }, "the report")];
}

async function setupModels() {
  const changed = (d) => d.unchanged ? `${d.version.slice(0, 12)} is already ${d.alias}; nothing changed.` : `${d.alias} is now ${d.version.slice(0, 12)} (was ${(d.previous || "none").slice(0, 12)}); the station follows within seconds.`
    + (d.forced ? " Promoted without a passing gate (kept in the history)." : "");
  let running = false;
  const promote = async (v) => {
    if (!confirm(`Make ${v.short} production? The line runs it within seconds.`)) return;
    let r = await api("POST", "/api/models/promote", { version: v.id });
    if (r.status === 409 && r.data.gate_required) {
      if (!confirm(`${r.data.error}.\n\nPromote anyway? The override is kept in the store's history under your name.`)) {
        showProblems($("model-result"), r, changed);
        return;
      }
      r = await api("POST", "/api/models/promote", { version: v.id, force: true });
    }
    showProblems($("model-result"), r, changed);
    await load();
  };
  const gate = async (v) => {
    showProblems($("model-result"), await api("POST", "/api/models/gate", { version: v.id }),
      () => `Gate of ${v.short} started (a low-priority process; the line keeps running).`);
    await load();
  };
  const load = async () => {
    const r = await api("GET", "/api/models");
    if (!r.ok) { $("follow").textContent = r.data.error || `HTTP ${r.status}`; $("model-rollback").disabled = true; return; }
    const d = r.data;
    const g = await api("GET", "/api/models/gate");
    const run = g.ok ? g.data.run : null;
    running = !!run && run.state === "running";
    const text = runText(run);
    if (text) $("gate-run").replaceChildren(...text); else $("gate-run").replaceChildren();
    $("follow").textContent = followText(d.running, d.follow) + (d.running_in_store ? "" :
      ` The running version ${d.running.slice(0, 12)} is no longer in the store (removed): a restart loads what model.bundle names.`);
    const production = d.aliases.production;
    document.querySelector("#models tbody").replaceChildren(...d.versions.slice().reverse().map((v) => el("tr", { "data-version": v.id },
      el("td", {}, el("code", {}, v.short), v.id === d.running ? " (running)" : ""),
      el("td", {}, v.aliases.join(", ")), el("td", {}, isoTime(v.added_at)), el("td", {}, v.added_by || ""),
      el("td", {}, v.parent ? el("code", {}, v.parent.slice(0, 12)) : ""), el("td", {}, (v.bytes / 1e6).toFixed(1)),
      el("td", { class: "gate" }, ...gateCell(v, production),
        v.aliases.includes("production") || !production ? "" : el("button", { type: "button", class: "gate-start",
          disabled: running ? "" : null, onclick: () => gate(v) }, v.gate ? "Gate again" : "Run gate")),
      el("td", {}, v.aliases.includes("production") ? "" : el("button", { type: "button", class: "promote", onclick: () => promote(v) }, "Make production")))));
    document.querySelector("#model-history tbody").replaceChildren(...d.history.slice().reverse().map((h) => el("tr", {},
      el("td", {}, isoTime(h.at)), el("td", {}, h.by || ""), el("td", {}, h.action || ""), el("td", {}, h.alias || ""),
      el("td", {}, el("code", {}, (h.version || "").slice(0, 12))), el("td", {}, el("code", {}, (h.previous || h.against || "").slice(0, 12))),
      el("td", { class: h.forced ? "problem" : "" }, h.forced ? `forced: ${h.forced}` : h.gate ? `gate ${h.gate}`
        : h.action === "gate" ? (h.passed ? "passed" : "failed") : ""))));
  };
  refreshPage = load;
  $("model-rollback").addEventListener("click", async () => {
    if (!confirm("Roll production back to the last known good version? The line runs it within seconds.")) return;
    showProblems($("model-result"), await api("POST", "/api/models/rollback", {}), changed);
    await load();
  });
  await load();
  setInterval(load, 3000);  // the follower's state and a running gate's progress
}

document.addEventListener("DOMContentLoaded", () => {
  if ($("disk-apply")) {
    $("disk-apply").addEventListener("click", () => diskAction("apply"));
    $("disk-discard").addEventListener("click", () => diskAction("discard"));
  }
  if ($("checks")) setupRecipes();
  else if ($("io")) setupIo();
  else if ($("versions")) setupConfig();
  else if ($("models")) { setupModels(); setupShadow(); }
  setInterval(() => loadConfig(false), 3000);  // an edit on disk shows up while the page is open
});
