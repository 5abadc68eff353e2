// Correcting the model's points on an inspection's image: pick a check, click where it missed a
// defect to add a point, click one of its points to remove it, then save (stored with an audit row).
(() => {
  const box = document.getElementById("corrections");
  if (!box) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const svg = document.getElementById("correct-marks");
  const select = document.getElementById("correct-check");
  const save = document.getElementById("save-corrections");
  const status = document.getElementById("correct-status");
  const points = JSON.parse(box.dataset.points);  // per check: the model's [x, y] (fractions)
  let added = [], removed = [];
  const NEAR = 0.03;

  function draw() {
    const idx = Number(select.value);
    const mark = (x, y, cls) => `<circle cx="${x * 1000}" cy="${y * 1000}" r="18" class="${cls}"/>`;
    svg.innerHTML = (points[idx] || []).map(([x, y]) =>
      mark(x, y, removed.some(([a, b]) => a === x && b === y) ? "removed" : "model")).join("") +
      added.map(([x, y]) => mark(x, y, "added")).join("");
    save.disabled = !added.length && !removed.length;
    svg.dataset.added = added.length;
    svg.dataset.removed = removed.length;
  }

  svg.addEventListener("click", (ev) => {
    const r = svg.getBoundingClientRect();
    const x = (ev.clientX - r.left) / r.width, y = (ev.clientY - r.top) / r.height;
    const near = (p) => Math.hypot(p[0] - x, p[1] - y) <= NEAR;
    const idx = Number(select.value);
    const a = added.findIndex(near);
    if (a >= 0) added.splice(a, 1);
    else {
      const m = (points[idx] || []).find(near);
      if (m) {
        const k = removed.findIndex(([u, v]) => u === m[0] && v === m[1]);
        if (k >= 0) removed.splice(k, 1); else removed.push(m);
      } else added.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
    }
    draw();
  });
  select.addEventListener("change", () => { added = []; removed = []; draw(); });
  save.addEventListener("click", async () => {
    save.disabled = true;
    const r = await fetch(`/api/inspections/${box.dataset.id}/corrections`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ check_idx: Number(select.value), add: added, remove: removed }) });
    if (r.ok) location.reload(); else { status.textContent = (await r.json()).error || r.status; save.disabled = false; }
  });
  draw();
})();
