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
