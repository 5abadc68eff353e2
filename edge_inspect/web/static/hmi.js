// Operator HMI: live updates from /api/events (server-sent events); no page reloads.
// The station sends a status event at least every second: silence for 2 s (two missed status events) means the link is lost,
// and the page says so instead of showing an old verdict as if it were current.
(() => {
  const t = JSON.parse(document.getElementById("labels").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const zone = document.querySelector('meta[name="station-zone"]').content;  // one zone on every page
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const LOST_AFTER_MS = 2000;
  let lastMessage = Date.now();
  let lastStatus = null;
  let clockOffset = 0;  // station time - browser time, from status events

  function showPicture(e) {
    // Exactly one picture area: this result's overlay, or the reason there is none — never an earlier image.
    const frame = $("frame");
    if (e && e.frame !== false) {
      $("no-frame").hidden = true;
      frame.hidden = false;
      frame.src = e.image || "/api/live/overlay.jpg?id=" + encodeURIComponent(e.result_id) + "&t=" + Date.now();
    } else {
      frame.hidden = true;
      frame.removeAttribute("src");
      $("no-frame").hidden = false;
      $("no-frame-reason").textContent = (e && e.error) || "";
    }
  }

  function showInspection(e) {
    const v = $("verdict");
    v.className = "verdict " + e.verdict.toLowerCase();
    v.textContent = t[e.verdict] || e.verdict;
    v.dataset.id = e.id ?? "";
    v.dataset.resultId = e.result_id;
    $("verdict-meta").hidden = false;
    $("result-id").textContent = "#" + e.result_id;
    $("part").textContent = e.part_id || "—";
    $("recipe").textContent = e.recipe;
    const cycle = e.timings_ms && e.timings_ms.cycle_ms;
    $("cycle").textContent = cycle == null ? "—" : Math.round(cycle);
    // The check list is the picture's legend: number and colour as drawn at each point.
    const items = e.checks.map((c, i) =>
      `<li class="${esc(c.status)}"><i class="swatch c${i % 8}">${i + 1}</i><b>${esc(c.name)}</b> <span>${esc(c.reason)}</span></li>`);
    if (e.error && e.frame !== false)  // with a picture, the reason goes in the list; without one, in its place
      items.push(`<li class="error"><b>${esc(t.ERROR)}</b> <span>${esc(e.error)}</span></li>`);
    $("checks").innerHTML = items.join("");
    showPicture(e);
    if (e.shift) showShift(e.shift);
  }

  function showShift(s) {
    $("c-total").textContent = s.total; $("c-pass").textContent = s.PASS;
    $("c-fail").textContent = s.FAIL; $("c-error").textContent = s.ERROR;
    $("c-yield").textContent = s.yield == null ? "—%" : (100 * s.yield).toFixed(1) + "%";
  }

  function light(key, state, text) {
    const el = $("light-" + key);
    el.className = "light " + state;
    el.textContent = t[key] + (text ? " · " + (t["st_" + text] || text) : "");
  }

  function showAlarms(alarms) {
    // Keyed update: an alarm's row (and its Acknowledge button) stays the same element while the
    // alarm is listed, so a press that spans a status update still lands, and focus stays put.
    const list = $("alarms");
    const fmt = (ts) => new Date(ts * 1000).toLocaleTimeString([], zone ? { timeZone: zone } : {});
    const none = list.querySelector("li.none");
    if (!alarms.length) {
      if (!none) list.innerHTML = `<li class="none">${esc(t.no_alarms)}</li>`;
      return;
    }
    if (none) none.remove();
    const codes = new Set(alarms.map((a) => a.code));
    for (const li of [...list.querySelectorAll("li.alarm")]) if (!codes.has(li.dataset.code)) li.remove();
    for (const a of alarms) {
      let li = [...list.querySelectorAll("li.alarm")].find((x) => x.dataset.code === a.code);
      if (!li) {
        li = document.createElement("li");
        li.dataset.code = a.code;
        li.innerHTML = "<b></b> <span></span><small></small>";
        list.appendChild(li);
      }
      li.className = "alarm " + (a.active ? "active" : "cleared");
      li.querySelector("b").textContent = t[a.code] || a.code;
      li.querySelector("span").textContent = a.message;
      li.querySelector("small").textContent = `${t.since} ${fmt(a.since)}` +
        (a.acknowledged ? ` · ${t.acknowledged_by} ${a.acknowledged_by || "—"}` : "");
      let button = li.querySelector("button.ack");
      if (a.acknowledged && button) button.remove();
      if (!a.acknowledged && !button) {
        button = document.createElement("button");
        button.className = "ack";
        button.dataset.code = a.code;
        button.textContent = t.acknowledge;
        li.appendChild(button);
      }
    }
  }

  function showStatus(s) {
    lastStatus = s;
    if (s.now) clockOffset = s.now * 1000 - Date.now();
    light("camera", s.camera === "ok" ? "ok" : "fault", s.camera === "ok" ? "" : s.camera);
    light("plc", s.plc === "off" ? "off" : s.plc === "ok" ? "ok" : "fault", s.plc === "off" ? t.off : s.plc === "ok" ? "" : s.plc);
    light("model", s.model_status === "ok" ? "ok" : "fault", s.model_status === "ok" ? "" : s.model_status);
    light("disk", s.disk === "ok" ? "ok" : s.disk === "low" ? "warn" : "fault", s.disk === "ok" ? "" : s.disk);
    if (s.recipe_active != null) $("recipe-active").textContent = s.recipe_active;
    showAlarms(s.alarms || []);
    tick();
  }

  function tick() {
    const lost = Date.now() - lastMessage > LOST_AFTER_MS;
    $("conn-lost").hidden = !lost;
    document.body.classList.toggle("stale", lost);
    if (lost) for (const key of ["camera", "plc", "model", "disk"]) light(key, "unknown", "?");
    const at = lastStatus && lastStatus.last_result_at;
    $("age").textContent = at ? Math.max(0, Math.round((Date.now() + clockOffset) / 1000 - at)) + " " + t.seconds_ago : "—";
  }

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
                                 body: JSON.stringify(body || {}), credentials: "same-origin" });
    if (r.status === 401) location.href = "/login?next=/";
    return r;
  }

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.ack");
    if (b) {
      b.disabled = true;
      const r = await post("/api/alarms/" + encodeURIComponent(b.dataset.code) + "/ack");
      if (!r.ok) b.disabled = false;
      fetch("/api/status?lang=" + document.documentElement.lang).then((x) => x.json()).then(showStatus);
    }
    if (ev.target.id === "trigger") {
      const button = ev.target;
      button.disabled = true;
      button.textContent = t.busy;
      try { await post("/api/trigger", {}); } finally { button.disabled = false; button.textContent = t.trigger; }
    }
  });

  $("frame").addEventListener("error", () => showPicture(null));  // the station no longer has it (restarted)
  const latest = JSON.parse($("latest").textContent);  // the log's newest row, drawn as its event was
  if (latest) showInspection(latest); else showPicture(null);

  const source = new EventSource("/api/events");
  const seen = () => { lastMessage = Date.now(); tick(); };
  source.addEventListener("open", () => { document.body.dataset.live = "1"; });
  source.addEventListener("error", () => { document.body.dataset.live = "0"; });
  source.addEventListener("inspection", (m) => { seen(); showInspection(JSON.parse(m.data)); });
  source.addEventListener("status", (m) => { seen(); showStatus(JSON.parse(m.data)); });
  source.addEventListener("stopped", () => { lastMessage = 0; tick(); });
  for (const kind of ["alarm", "alarm_cleared", "alarm_acknowledged"])
    source.addEventListener(kind, () => { seen(); fetch("/api/status?lang=" + document.documentElement.lang).then((r) => r.json()).then(showStatus); });
  setInterval(tick, 250);
})();
