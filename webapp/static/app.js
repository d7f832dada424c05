// Progressive enhancement only: every page works without this file.
document.documentElement.classList.replace("no-js", "js");
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  navigator.clipboard.writeText(field.value).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
});
// Times (<time data-when>, see webapp/filters.py `when`): the exact time on hover in the
// reader's own time zone, and the relative words kept fresh while the page stays open.
(() => {
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  const words = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const exact = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  function relative(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    const size = Math.abs(seconds);
    if (size < 45) return "just now";
    if (size >= 14 * 86400) return dateOnly.format(date);
    for (const [unit, length] of units) {
      if (size >= length * 0.9 || unit === "minute") {
        return words.format(Math.round(seconds / length) || Math.sign(seconds), unit);
      }
    }
    return "";
  }
  function refresh() {
    for (const el of document.querySelectorAll("time[data-when]")) {
      const date = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      el.title = exact.format(date);
      el.textContent = relative(date);
    }
  }
  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:afterSettle", refresh);
  setInterval(refresh, 30000);
})();

// Options whose parent is off fold away: data-folds-when-off="checkbox name" hides its box while
// that checkbox is off, data-folds-when-on while it is on. Never a box with an error in it.
function foldOptions() {
  document.querySelectorAll("[data-folds-when-off], [data-folds-when-on]").forEach((box) => {
    const whenOff = box.dataset.foldsWhenOff;
    const parent = document.querySelector(
      `input[type=checkbox][name="${whenOff || box.dataset.foldsWhenOn}"]`);
    if (!parent) return;
    const fold = whenOff ? !parent.checked : parent.checked;
    box.hidden = fold && !box.querySelector(".has-error");
  });
}
document.addEventListener("DOMContentLoaded", foldOptions);
document.addEventListener("htmx:afterSettle", foldOptions);
document.addEventListener("change", (event) => {
  if (event.target.matches("input[type=checkbox]")) foldOptions();
});
