// Keyboard shortcuts on every signed-in page; the list people see is templates/_shortcuts_dialog.html.
//
//   Ctrl/⌘+Shift+O  new chat            Shift+Esc or /  focus the message box
//   Esc             stop the reply      Ctrl/⌘+K        search conversations
//   (from the page or the message box)
//   ? or Ctrl/⌘+/   this list
//
// Plain keys (/ and ?) are left alone while someone types in a field. This module knows nothing
// of chat.js: it presses the visible Stop button, focuses #composer-input, and so on.

const dialog = document.getElementById("shortcuts-dialog");
const isMac = /Mac|iPhone|iPad|iPod/.test(navigator.platform || navigator.userAgent);
const NEW_CHAT_URL = dialog?.dataset.newUrl || "/chat/";
const SEARCH_URL = dialog?.dataset.searchUrl || "/chat/search/";
let returnFocus = null;

function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file", "image"].includes(target.type);
  }
  return false;
}

const shown = (el) => Boolean(el) && !el.hidden && el.getClientRects().length > 0;
const anyDialogOpen = () => Boolean(document.querySelector("dialog[open]"));

// --- the help dialog ------------------------------------------------------------------------
function openHelp() {
  if (!dialog || dialog.open) return;
  returnFocus = document.activeElement;
  dialog.showModal();
  dialog.querySelector("[data-close]")?.focus();
}

if (dialog) {
  if (isMac) for (const key of dialog.querySelectorAll("kbd[data-mod]")) key.textContent = "⌘";
  dialog.querySelector("[data-close]")?.addEventListener("click", () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
    if (!inside) dialog.close();
  });
  dialog.addEventListener("close", () => {
    const back = returnFocus;
    returnFocus = null;
    if (back instanceof HTMLElement && back.isConnected && back !== document.body) back.focus();
  });
  for (const button of document.querySelectorAll("[data-shortcuts-open]")) {
    button.hidden = false;
    button.addEventListener("click", openHelp);
  }
}

// --- the actions ------------------------------------------------------------------------------
function focusComposer() {
  const box = document.getElementById("composer-input");
  if (!box || box.disabled || !shown(box)) return false;
  box.focus();
  const end = box.value.length;
  box.setSelectionRange(end, end);
  return true;
}

function focusSearch() {
  const box = document.getElementById("sidebar-search-input") || document.querySelector("#sidebar input[type='search']");
  if (!box) {
    location.assign(SEARCH_URL);
    return;
  }
  // On a phone the sidebar is a closed drawer: open it first (layout.js).
  if (!shown(box) || getComputedStyle(box).visibility === "hidden") document.dispatchEvent(new CustomEvent("chatsite:open-sidebar"));
  box.focus();
  box.select();
}

function stopReply() {
  const stop = document.getElementById("stop-button");
  if (!shown(stop) || stop.disabled) return false;
  stop.click(); // chat.js sends the stop command for whatever is streaming
  return true;
}

// --- the keys ---------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.isComposing) return;
  const mod = isMac ? event.metaKey : event.ctrlKey;
  const otherMod = isMac ? event.ctrlKey : event.metaKey;
  const key = event.key;
  const inField = typing(event.target);

  // While a dialog (this one or another page's) is open, its own keys rule: Esc closes it.
  if (anyDialogOpen()) return;

  if (mod && !otherMod && !event.altKey) {
    if (event.shiftKey && (event.code === "KeyO" || key.toLowerCase() === "o")) {
      event.preventDefault();
      location.assign(NEW_CHAT_URL);
    } else if (!event.shiftKey && (event.code === "KeyK" || key.toLowerCase() === "k")) {
      event.preventDefault();
      focusSearch();
    } else if (key === "/" || event.code === "Slash") {
      event.preventDefault();
      openHelp();
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;

  if (key === "Escape") {
    if (event.shiftKey) {
      if (focusComposer()) event.preventDefault();
    } else if ((!inField || event.target.id === "composer-input") && stopReply()) {
      // Not from another field: Esc there means "clear" or "cancel" (search box, message editor).
      event.preventDefault();
    }
    return;
  }
  if (inField) return; // "/" and "?" are text in a field
  if (key === "/") {
    if (focusComposer()) event.preventDefault();
  } else if (key === "?") {
    event.preventDefault();
    openHelp();
  }
});
