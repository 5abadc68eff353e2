// Operator HMI: live updates from /api/events (server-sent events); no page reloads.
(() => {
  const t = JSON.parse(document.getElementById("labels").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  function showInspection(e) {
    const v = $("verdict");
    v.className = "verdict " + e.verdict.toLowerCase();
    v.textContent = t[e.verdict] || e.verdict;
    v.dataset.id = e.id ?? "";
    v.dataset.resultId = e.result_id;
    $("verdict-meta").textContent = `#${e.result_id} · ${e.part_id || "—"} · ${new Date().toLocaleTimeString()}`;
    $("checks").innerHTML = e.checks.map((c) =>
      `<li class="${esc(c.status)}"><b>${esc(c.name)}</b> <span>${esc(c.reason)}</span></li>`).join("")
      || `<li class="error"><b>${esc(t.ERROR)}</b> <span>${esc(e.error)}</span></li>`;
    $("frame").classList.remove("empty");
    $("frame").src = "/api/live/overlay.jpg?id=" + encodeURIComponent(e.result_id) + "&t=" + Date.now();
    if (e.shift) showShift(e.shift);
  }

  function showShift(s) {
    $("c-total").textContent = s.total; $("c-pass").textContent = s.PASS;
    $("c-fail").textContent = s.FAIL; $("c-error").textContent = s.ERROR;
    $("c-yield").textContent = s.yield == null ? "—%" : (100 * s.yield).toFixed(1) + "%";
  }

  function showStatus(s) {
    const lights = { camera: s.camera === "ok", plc: s.plc === "ok" || s.plc === "off", model: !!s.model, disk: s.disk === "ok" };
    for (const [k, ok] of Object.entries(lights)) $("light-" + k).className = "light " + (ok ? "ok" : "fault");
    const alarms = s.alarms || [];
    $("alarms").innerHTML = alarms.length ? alarms.map((a) =>
      `<li class="alarm ${a.active ? "active" : "cleared"}" data-code="${esc(a.code)}">
         <b>${esc(t[a.code] || a.code)}</b> <span>${esc(a.message)}</span>
         ${a.acknowledged ? "" : `<button class="ack" data-code="${esc(a.code)}">${esc(t.acknowledge)}</button>`}
       </li>`).join("") : `<li class="none">${esc(t.no_alarms)}</li>`;
  }

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
                                 body: JSON.stringify(body || {}), credentials: "same-origin" });
    if (r.status === 401) location.href = "/login?next=/";
    return r;
  }

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.ack");
    if (b) post("/api/alarms/" + encodeURIComponent(b.dataset.code) + "/ack");
    if (ev.target.id === "trigger") post("/api/trigger", {});
  });

  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { document.body.dataset.live = "1"; });
  source.addEventListener("error", () => { document.body.dataset.live = "0"; });
  source.addEventListener("inspection", (m) => showInspection(JSON.parse(m.data)));
  source.addEventListener("status", (m) => showStatus(JSON.parse(m.data)));
  for (const kind of ["alarm", "alarm_cleared", "alarm_acknowledged"])
    source.addEventListener(kind, () => fetch("/api/status").then((r) => r.json()).then(showStatus));
})();
