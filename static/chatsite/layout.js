// Phones (below 700px, app.css): the conversations sidebar is a drawer behind the menu button,
// and the account links fold into a menu behind the "⋯" button. Both keep aria-expanded true to
// what is shown, close on Escape (focus back on their button) and on a click elsewhere.

const narrow = window.matchMedia("(max-width: 699.98px)");

// --- the conversations drawer -----------------------------------------------------------------
const navToggle = document.getElementById("nav-toggle");
const sidebar = document.getElementById("sidebar");
let scrim = null;

const drawerOpen = () => document.body.classList.contains("nav-open");

function setDrawer(open, { returnFocus = false } = {}) {
  document.body.classList.toggle("nav-open", open);
  navToggle.setAttribute("aria-expanded", String(open));
  // The page behind the open drawer is out of reach (Tab stays in the drawer and the top bar).
  for (const el of document.querySelectorAll(".chat-main")) el.inert = open;
  if (open) {
    setAccountMenu(false);
    if (!scrim) {
      scrim = document.createElement("div");
      scrim.className = "nav-scrim";
      scrim.setAttribute("aria-hidden", "true");
      scrim.addEventListener("click", () => setDrawer(false, { returnFocus: true }));
    }
    sidebar.before(scrim);
    // Once it is visible, focus the current conversation (or the first control), unless the
    // opener already put focus inside (the search shortcut).
    requestAnimationFrame(() => {
      if (sidebar.contains(document.activeElement)) return;
      sidebar.querySelector(".conv-item.current a, a, button, input")?.focus();
    });
  } else {
    scrim?.remove();
    if (returnFocus || sidebar.contains(document.activeElement)) navToggle.focus();
  }
}

if (navToggle && sidebar) {
  navToggle.hidden = false;
  navToggle.addEventListener("click", () => setDrawer(!drawerOpen()));
  // Following a link closes it (the page may not change: e.g. the current conversation).
  sidebar.addEventListener("click", (event) => {
    if (drawerOpen() && event.target.closest("a")) setDrawer(false);
  });
  // Other scripts (Ctrl/⌘+K in shortcuts.js) open it to reach the search box.
  document.addEventListener("chatsite:open-sidebar", () => { if (narrow.matches && !drawerOpen()) setDrawer(true); });
}

// --- the account menu -------------------------------------------------------------------------
const topbar = document.querySelector(".topbar");
const accountToggle = document.getElementById("account-toggle");
const topnav = document.getElementById("topnav");

const accountOpen = () => Boolean(topbar?.classList.contains("account-open"));

function setAccountMenu(open, { returnFocus = false } = {}) {
  if (!accountToggle || !topnav) return;
  topbar.classList.toggle("account-open", open);
  accountToggle.setAttribute("aria-expanded", String(open));
  if (open) topnav.querySelector("a, button")?.focus();
  else if (returnFocus || topnav.contains(document.activeElement)) accountToggle.focus();
}

if (accountToggle && topnav) {
  accountToggle.hidden = false;
  topbar.classList.add("has-account-menu");
  accountToggle.addEventListener("click", () => setAccountMenu(!accountOpen()));
  document.addEventListener("click", (event) => {
    if (accountOpen() && !topnav.contains(event.target) && !accountToggle.contains(event.target)) setAccountMenu(false);
  });
  topnav.addEventListener("focusout", (event) => {
    if (accountOpen() && narrow.matches && event.relatedTarget && !topnav.contains(event.relatedTarget) && event.relatedTarget !== accountToggle) setAccountMenu(false);
  });
}

// --- both ---------------------------------------------------------------------------------------
// Capture phase: closing takes Escape before the page's shortcuts (shortcuts.js stops a
// streaming reply on Escape only when nothing else used the key).
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (accountOpen()) {
    event.preventDefault();
    setAccountMenu(false, { returnFocus: true });
  } else if (navToggle && sidebar && drawerOpen()) {
    event.preventDefault();
    setDrawer(false, { returnFocus: true });
  }
}, true);

narrow.addEventListener("change", () => {
  if (narrow.matches) return;
  if (navToggle && sidebar && drawerOpen()) setDrawer(false);
  setAccountMenu(false);
});

// --- forms that ask first -----------------------------------------------------------------------
// `<form data-confirm="Delete this conversation?">`: no inline handlers (the Content Security
// Policy allows no inline script).
document.addEventListener("submit", (e) => {
  const question = e.target instanceof HTMLFormElement ? e.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) e.preventDefault();
});
