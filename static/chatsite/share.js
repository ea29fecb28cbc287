// The Export and Share menus in the conversation header (templates/conversations/_conversation_actions.html).
// The list of share links is server-rendered HTML (no message text in it), fetched when the
// Share menu opens; without JavaScript, "Show links" reloads the page with the list.
import "./copy.js"; // Copy buttons: [data-copy-text]

const menu = document.getElementById("share-menu");

async function loadLinks() {
  const box = document.getElementById("share-links");
  if (!menu || !box || !box.querySelector(".share-show")) return;
  try {
    const response = await fetch(menu.dataset.linksUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    box.replaceChildren(...doc.body.childNodes);
  } catch {
    // offline: the "Show links" link still works as a plain link
  }
}

if (menu) {
  menu.addEventListener("toggle", () => { if (menu.open) loadLinks(); });
  if (menu.open) menu.querySelector(".share-url")?.focus();
}

document.addEventListener("click", (e) => {
  if (e.target.closest("#share-links .share-show")) {
    e.preventDefault();
    loadLinks();
    return;
  }
  // A click outside an open menu closes it.
  for (const open of document.querySelectorAll("details.menu[open]")) {
    if (!open.contains(e.target)) open.open = false;
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  for (const open of document.querySelectorAll("details.menu[open]")) {
    open.open = false;
    open.querySelector("summary")?.focus();
  }
});
document.addEventListener("focusin", (e) => {
  if (e.target.matches?.(".share-url")) e.target.select();
});
