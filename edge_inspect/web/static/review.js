// Keyboard review on an inspection's page: → / n next, ← / p previous, 1 2 3 pick a disposition,
// c to the comment, s save (and go on to the next one in the list), Esc leaves the comment.
(() => {
  const form = document.getElementById("disposition-form");
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ["TEXTAREA", "INPUT"].includes(document.activeElement.tagName) &&
      document.activeElement.type !== "radio";
    if (typing) {
      if (ev.key === "Escape") document.activeElement.blur();
      return;
    }
    const go = (id) => { const a = document.getElementById(id); if (a) location.href = a.href; };
    if (ev.key === "ArrowRight" || ev.key === "n") go("next");
    else if (ev.key === "ArrowLeft" || ev.key === "p") go("prev");
    else if (form && ["1", "2", "3"].includes(ev.key)) {
      const radios = form.querySelectorAll('input[name="disposition"]');
      const pick = radios[Number(ev.key) - 1];
      if (pick) { pick.checked = true; pick.focus(); }
    } else if (form && ev.key === "c") { ev.preventDefault(); form.querySelector("textarea").focus(); }
    else if (form && ev.key === "s") {
      if (!form.querySelector('input[name="disposition"]:checked')) return;
      document.getElementById("advance").value = "1";
      form.submit();
    } else return;
    ev.preventDefault();
  });
})();
