// Runs `enhance(thread)` on every `.thread` of the page now and again (once per frame at most)
// whenever its contents change: replies stream in, finish and get re-rendered.
// Shared by copy.js (copy buttons) and math.js (typesetting).

export function watchThreads(enhance, { classChanges = false } = {}) {
  const targets = document.querySelectorAll(".thread");
  if (!targets.length) return;
  let scheduled = false;
  const observer = new MutationObserver(() => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      for (const target of targets) enhance(target);
    });
  });
  const options = classChanges ? { childList: true, subtree: true, attributes: true, attributeFilter: ["class"] } : { childList: true, subtree: true };
  for (const target of targets) {
    enhance(target);
    observer.observe(target, options);
  }
}
