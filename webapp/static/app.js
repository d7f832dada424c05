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

// A message's HTML frame grows to its content. The frame is sandboxed without scripts but same
// origin, so its document can be measured from here; without JavaScript it keeps a fixed height.
function growFrame(frame) {
  try {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    frame.style.height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0) + 2 + "px";
    frame.classList.add("grown");
  } catch (error) { /* not same origin (e.g. remote images page not loaded yet): keep the height */ }
}
document.addEventListener("load", (event) => {
  if (event.target.matches && event.target.matches("iframe[data-grow]")) growFrame(event.target);
}, true);
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("iframe[data-grow]").forEach((frame) => {
    if (frame.contentDocument && frame.contentDocument.readyState === "complete") growFrame(frame);
  });
});

// The case page's Reply / Internal note tabs: one form at a time. Without JavaScript both are shown.
function showTab(composer, id) {
  composer.querySelectorAll("[data-tab]").forEach((tab) => {
    const panel = document.getElementById(tab.dataset.tab);
    const current = tab.dataset.tab === id;
    if (current) tab.setAttribute("aria-current", "true"); else tab.removeAttribute("aria-current");
    if (panel) panel.hidden = !current;
  });
}
document.addEventListener("click", (event) => {
  const tab = event.target.closest("[data-tab]");
  if (!tab) return;
  event.preventDefault();
  const composer = tab.closest(".composer");
  showTab(composer, tab.dataset.tab);
  const panel = document.getElementById(tab.dataset.tab);
  const field = panel && panel.querySelector("textarea");
  if (field) field.focus();
});
function setUpComposers(root) {
  root.querySelectorAll(".composer").forEach((composer) => {
    const current = composer.querySelector("[data-tab][aria-current]") || composer.querySelector("[data-tab]");
    if (current) showTab(composer, current.dataset.tab);
  });
}
document.addEventListener("DOMContentLoaded", () => setUpComposers(document));
// A form swapped in by htmx (a fresh Reply or note form) keeps the tab that was open.
document.addEventListener("htmx:afterSettle", () => setUpComposers(document));

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
