// The conversations sidebar, on every page that has one (templates/conversations/_sidebar.html):
// - groups (Pinned, Today, Previous 7 days, Older) in this browser's time zone, which is also
//   kept in a cookie so the server groups the same way;
// - more conversations as the list scrolls (keyset pages from /chat/sidebar.json);
// - a menu per conversation: rename inline, pin, archive, delete (confirmed, then undoable);
// - live search in the sidebar; landing on a searched message (/chat/<id>/#m<message id>).
// chat.js also writes to #conv-list (a conversation with new activity is prepended): those
// items are put back into their group here. Titles and snippets are set with textContent only.

const aside = document.getElementById("sidebar");
const list = document.getElementById("conv-list");
const actionsForm = document.getElementById("conv-actions");
const csrf = actionsForm?.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
const currentId = Number(aside?.dataset.currentId) || null;
const toastEl = document.getElementById("undo-toast");
const toastText = document.getElementById("undo-text");
const undoForm = document.getElementById("undo-form");
const dialog = document.getElementById("confirm-delete");

const GROUPS = ["pinned", "today", "week", "older"];
const LABELS = { pinned: "Pinned", today: "Today", week: "Previous 7 days", older: "Older" };
const ACTIONS = { pin: "Pin", unpin: "Unpin", archive: "Archive", unarchive: "Unarchive", delete: "Delete" };
const RETURN_KEY = "chatsite:undo-return"; // a conversation deleted while open: undo goes back to it

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// --- time zone ------------------------------------------------------------------------------
function rememberTimeZone() {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!tz || !/^[A-Za-z0-9_+\-/]{1,64}$/.test(tz)) return; // IANA names are cookie-safe as they are
  const saved = document.cookie.split("; ").find((c) => c.startsWith("chatsite_tz="));
  if (!saved || saved.slice("chatsite_tz=".length) !== tz) {
    document.cookie = `chatsite_tz=${tz}; path=/; max-age=31536000; samesite=lax`;
  }
}

// --- groups ---------------------------------------------------------------------------------
function groupOf(li) {
  if (li.dataset.pinned) return "pinned";
  const updated = Date.parse(li.dataset.updated || "") || Date.now();
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  if (updated >= today.getTime()) return "today";
  const weekStart = new Date(today);
  weekStart.setDate(weekStart.getDate() - 7);
  return updated >= weekStart.getTime() ? "week" : "older";
}

function groupList(key) {
  let section = list.querySelector(`.conv-group[data-group="${key}"]`);
  if (!section) {
    section = el("section", "conv-group");
    section.dataset.group = key;
    section.append(el("h2", "conv-group-label", LABELS[key]), el("ul", "conv-group-items"));
    const later = [...list.querySelectorAll(".conv-group")].find((s) => GROUPS.indexOf(s.dataset.group) > GROUPS.indexOf(key));
    const more = document.getElementById("conv-more");
    if (later) later.before(section);
    else if (more && more.parentElement === list) more.before(section);
    else list.append(section);
    list.querySelector(".conv-empty")?.remove();
  }
  return section.querySelector(".conv-group-items");
}

const sortKey = (li) => [Date.parse(li.dataset.updated || "") || 0, Number(li.dataset.conversationId)];

// Into its group, newest activity first (as the server orders them).
function placeItem(li) {
  const ul = groupList(groupOf(li));
  const [t, id] = sortKey(li);
  const next = [...ul.children].find((other) => {
    if (other === li) return false;
    const [ot, oid] = sortKey(other);
    return ot < t || (ot === t && oid < id);
  });
  if (next) next.before(li);
  else ul.append(li);
  tidy();
}

function tidy() {
  for (const section of list.querySelectorAll(".conv-group")) {
    if (!section.querySelector(".conv-item")) section.remove();
  }
  if (!list.querySelector(".conv-item") && !list.querySelector(".conv-empty")) list.prepend(el("p", "conv-empty", "No conversations yet."));
}

const itemOf = (id) => list.querySelector(`.conv-item[data-conversation-id="${id}"]`);

// --- items ----------------------------------------------------------------------------------
function actionButton(id, action) {
  const button = el("button", action === "delete" ? "danger" : "", ACTIONS[action]);
  button.type = "submit";
  button.setAttribute("form", "conv-actions");
  button.setAttribute("formaction", `/chat/${id}/${action}/`);
  button.dataset.wsAction = action;
  return button;
}

function buildMenu(id, title, pinned) {
  const details = el("details", "conv-menu");
  const summary = el("summary", "conv-menu-button");
  summary.title = "More";
  summary.setAttribute("aria-label", `More for “${title}”`);
  const dots = el("span", "", "⋯");
  dots.setAttribute("aria-hidden", "true");
  summary.append(dots);
  const panel = el("div", "conv-menu-panel");
  const rename = el("a", "", "Rename");
  rename.href = `/chat/${id}/rename/?next=${encodeURIComponent(location.pathname + location.search)}`;
  rename.dataset.wsAction = "rename";
  panel.append(rename, actionButton(id, pinned ? "unpin" : "pin"), actionButton(id, "archive"), actionButton(id, "delete"));
  details.append(summary, panel);
  return details;
}

function buildItem(item) {
  const li = el("li", "conv-item");
  li.dataset.conversationId = item.id;
  li.dataset.updated = item.updated_at;
  if (item.pinned) li.dataset.pinned = "1";
  li.classList.toggle("generating", Boolean(item.generating));
  const a = el("a");
  a.href = item.url || `/chat/${item.id}/`;
  const dot = el("span", "dot");
  dot.title = "Claude is answering";
  a.append(el("span", "conv-title", item.title), dot);
  if (item.id === currentId) {
    li.classList.add("current");
    a.setAttribute("aria-current", "page");
  }
  li.append(a, buildMenu(item.id, item.title, item.pinned));
  return li;
}

// The server's word on a conversation after a change: show it where it now belongs.
function syncItem(item) {
  const old = itemOf(item.id);
  if (item.archived || item.deleted) {
    old?.remove();
    tidy();
    return;
  }
  const li = buildItem(item);
  if (old) {
    li.classList.toggle("generating", old.classList.contains("generating") || Boolean(item.generating));
    old.remove();
  }
  placeItem(li);
}

function setPinned(li, pinned) {
  if (pinned) li.dataset.pinned = "1";
  else delete li.dataset.pinned;
  const id = li.dataset.conversationId;
  li.querySelector('[data-ws-action="pin"], [data-ws-action="unpin"]')?.replaceWith(actionButton(id, pinned ? "unpin" : "pin"));
  placeItem(li);
}

// chat.js prepends a conversation with new activity (or one started in another tab) straight
// into #conv-list: give it a menu and put it in its group.
function adopt(li) {
  const id = Number(li.dataset.conversationId);
  if (id === currentId && aside.dataset.currentArchived) {
    li.remove(); // activity in an archived conversation keeps it archived
    tidy();
    return;
  }
  li.dataset.updated = new Date().toISOString();
  if (!li.querySelector(".conv-menu")) {
    li.append(buildMenu(id, li.querySelector(".conv-title")?.textContent || "New chat", Boolean(li.dataset.pinned)));
  }
  if (id === currentId) li.classList.add("current");
  placeItem(li);
}

// --- talking to the server ------------------------------------------------------------------
async function post(url, fields = {}) {
  // Urlencoded, not FormData: an empty multipart body is refused as malformed.
  const body = new URLSearchParams(fields);
  try {
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf },
    });
    const data = await response.json().catch(() => null);
    if (!response.ok || !data || data.ok === false) {
      toast(data?.message || "That did not work. Reload the page and try again.");
      return null;
    }
    return data;
  } catch {
    toast("No connection to the server. Try again in a moment.");
    return null;
  }
}

// --- toast: undo, errors ----------------------------------------------------------------------
let toastTimer = null;
function hideToast() {
  clearTimeout(toastTimer);
  toastEl.hidden = true;
}
function toast(text, seconds = 4) {
  toastText.textContent = text;
  undoForm.hidden = true;
  toastEl.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, seconds * 1000);
}
function showUndo(title, url, seconds) {
  toastText.textContent = `Deleted “${title}”.`;
  undoForm.action = url;
  undoForm.hidden = false;
  toastEl.hidden = false;
  clearTimeout(toastTimer);
  // A little before the server's window closes, so a click never arrives too late.
  toastTimer = setTimeout(hideToast, Math.max(0, seconds * 1000 - 500));
}

undoForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  hideToast();
  const data = await post(undoForm.action);
  if (!data) return;
  const back = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  if (back && Number(back) === data.item.id) {
    location.href = data.item.url;
    return;
  }
  if (document.getElementById("archived-list") && data.item.archived) {
    location.reload();
    return;
  }
  syncItem(data.item);
});

// --- the menu's actions -----------------------------------------------------------------------
function titleOf(row) {
  return row?.querySelector(".conv-title, .archived-title")?.textContent || "this conversation";
}

function removeRow(id) {
  itemOf(id)?.remove();
  document.querySelector(`.archived-item[data-conversation-id="${id}"]`)?.remove();
  tidy();
}

function confirmDelete(row, url) {
  const id = Number(row.dataset.conversationId);
  const title = titleOf(row);
  document.getElementById("confirm-delete-text").textContent = `“${title}” will be deleted. You can undo it for a few seconds.`;
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "delete") return;
    const data = await post(url);
    if (!data) return;
    removeRow(id);
    if (id === currentId) {
      // Its page is gone: the new-chat page shows the same undo (kept in the session).
      sessionStorage.setItem(RETURN_KEY, String(id));
      location.href = "/chat/";
      return;
    }
    showUndo(title, data.undo_url, data.undo_seconds);
  }, { once: true });
  dialog.showModal();
}

function startRename(li) {
  if (!li || li.classList.contains("renaming")) return;
  const id = Number(li.dataset.conversationId);
  const titleEl = li.querySelector(".conv-title");
  const before = titleEl.textContent;
  const input = el("input", "conv-rename-input");
  input.value = before;
  input.maxLength = 200;
  input.setAttribute("aria-label", "New title");
  li.classList.add("renaming");
  li.prepend(input);
  input.focus();
  input.select();
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    const title = input.value.trim();
    input.remove();
    li.classList.remove("renaming");
    if (!save || !title || title === before) return;
    titleEl.textContent = title;
    const data = await post(`/chat/${id}/rename/`, { title });
    const final = data ? data.item.title : before;
    titleEl.textContent = final;
    li.querySelector(".conv-menu-button")?.setAttribute("aria-label", `More for “${final}”`);
    if (data && id === currentId) {
      const heading = document.getElementById("conversation-title");
      if (heading) heading.textContent = final;
      document.title = `${final} · Chatsite`;
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); finish(true); }
    else if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-ws-action]");
  if (!button) return;
  const row = button.closest("[data-conversation-id]");
  if (!row) return;
  event.preventDefault();
  button.closest("details")?.removeAttribute("open");
  const action = button.dataset.wsAction;
  if (action === "rename") { startRename(row); return; }
  if (action === "delete") { confirmDelete(row, button.getAttribute("formaction")); return; }
  const data = await post(button.getAttribute("formaction"));
  if (!data) return;
  const item = data.item;
  if (action === "pin" || action === "unpin") {
    const li = itemOf(item.id);
    if (li) setPinned(li, item.pinned);
    return;
  }
  if (action === "archive") {
    removeRow(item.id);
    if (item.id === currentId) aside.dataset.currentArchived = "1";
    toast(`Archived “${item.title}”. It is under “Archived conversations”.`);
    return;
  }
  if (action === "unarchive") {
    document.querySelector(`.archived-item[data-conversation-id="${item.id}"]`)?.remove();
    document.querySelector(`.archived-note[data-conversation-id="${item.id}"]`)?.remove(); // the open conversation's header
    if (document.getElementById("archived-list") && !document.querySelector(".archived-item")) {
      document.getElementById("archived-list").append(el("li", "conv-empty archived-empty", "Nothing archived."));
    }
    if (item.id === currentId) delete aside.dataset.currentArchived;
    syncItem(item);
    toast(`“${item.title}” is back in your conversations.`);
  }
});

// Close an open menu when clicking elsewhere (details elements stay open by themselves).
document.addEventListener("click", (event) => {
  for (const open of document.querySelectorAll(".conv-menu[open]")) {
    if (!open.contains(event.target)) open.removeAttribute("open");
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const open = document.querySelector(".conv-menu[open]");
  if (!open) return;
  event.preventDefault();
  open.removeAttribute("open");
  open.querySelector("summary")?.focus();
});

// --- more pages as the list scrolls ------------------------------------------------------------
let cursor = list?.dataset.nextCursor || null;
let loading = false;
const more = document.getElementById("conv-more");
let pager = null;

async function loadMore() {
  if (!cursor || loading) return;
  loading = true;
  try {
    const response = await fetch(`${aside.dataset.sidebarUrl}?cursor=${encodeURIComponent(cursor)}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const data = await response.json();
    for (const item of data.items) {
      if (!itemOf(item.id)) placeItem(buildItem(item));
    }
    cursor = data.next_cursor;
    list.dataset.nextCursor = cursor || "";
    if (!cursor) {
      pager?.disconnect();
      more?.remove();
    } else if (pager && more) {
      list.append(more); // stays last
      pager.unobserve(more);
      pager.observe(more); // reports again at once if it is still in view
    }
  } catch {
    // The link stays; scrolling or clicking it tries again.
  } finally {
    loading = false;
  }
}

// --- live search -----------------------------------------------------------------------------
const searchInput = document.getElementById("sidebar-search-input");
const searchResults = document.getElementById("sidebar-search-results");
const archivedLink = aside?.querySelector(".conv-archived-link");
let searchTimer = null;
let searchSeq = 0;

function appendParts(parent, parts) {
  for (const [text, matched] of parts) parent.append(matched ? el("mark", "", text) : document.createTextNode(text));
}

function showList() {
  searchResults.hidden = true;
  searchResults.replaceChildren();
  list.hidden = false;
  if (archivedLink) archivedLink.hidden = false;
}

async function runSearch() {
  const q = searchInput.value.trim();
  const seq = ++searchSeq;
  if (!q) { showList(); return; }
  let data;
  try {
    const response = await fetch(`${aside.dataset.searchUrl}?q=${encodeURIComponent(q)}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    data = await response.json();
  } catch {
    return;
  }
  if (seq !== searchSeq) return; // a newer query is on its way
  const nodes = [];
  for (const r of data.results) {
    const box = el("div", "search-result");
    box.dataset.conversationId = r.conversation_id;
    const title = el("a", "search-result-title");
    title.href = r.url;
    appendParts(title, r.title);
    box.append(title);
    if (r.archived) box.append(el("span", "badge badge-archived", "Archived"));
    for (const hit of r.hits.slice(0, 2)) {
      const a = el("a", "search-hit");
      a.href = hit.url;
      a.dataset.messageId = hit.message_id;
      const snippet = el("span", "search-snippet");
      appendParts(snippet, hit.snippet);
      a.append(snippet);
      box.append(a);
    }
    nodes.push(box);
  }
  if (!nodes.length) nodes.push(el("p", "search-none", "No matches."));
  const all = el("a", "search-all", "All results");
  all.href = `/chat/search/?q=${encodeURIComponent(q)}`;
  nodes.push(all);
  searchResults.replaceChildren(...nodes);
  searchResults.hidden = false;
  list.hidden = true;
  if (archivedLink) archivedLink.hidden = true;
}

// --- landing on a message from search ---------------------------------------------------------
function landingNote(text) {
  const thread = document.getElementById("thread");
  let note = document.getElementById("landing-note");
  if (!note) {
    note = el("div", "landing-note");
    note.id = "landing-note";
    note.setAttribute("role", "status");
    thread.before(note);
  }
  note.textContent = text;
}

function land() {
  const match = /^#m(\d+)$/.exec(location.hash);
  const thread = document.getElementById("thread");
  if (!match || !thread) return;
  const target = document.getElementById(`m${match[1]}`);
  if (!target) {
    landingNote("The message you searched for is in another version of this conversation, not the one shown. Switch versions with the arrows under a message to see it.");
    return;
  }
  document.getElementById("landing-note")?.remove();
  target.classList.remove("search-target");
  void target.offsetWidth; // restart the highlight animation
  target.classList.add("search-target");
  target.tabIndex = -1;
  target.focus({ preventScroll: true });
  // Messages far from view are laid out lazily (content-visibility): settle, then again.
  const scroll = () => target.scrollIntoView({ block: "center" });
  scroll();
  requestAnimationFrame(scroll);
  setTimeout(scroll, 300);
}

// --- start -----------------------------------------------------------------------------------
if (aside && list) {
  rememberTimeZone();
  // The server grouped by the time zone it knew; this browser's may differ.
  for (const li of [...list.querySelectorAll(".conv-item")]) {
    if (groupOf(li) !== li.closest(".conv-group")?.dataset.group) placeItem(li);
  }
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && node.matches("li.conv-item") && node.parentElement === list) adopt(node);
      }
    }
  }).observe(list, { childList: true });

  if (more) {
    more.addEventListener("click", (event) => { event.preventDefault(); loadMore(); });
    if ("IntersectionObserver" in window) {
      pager = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) loadMore();
      }, { root: list, rootMargin: "200px" });
      pager.observe(more);
    }
  }

  searchInput?.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  });
  searchInput?.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && searchInput.value) {
      event.preventDefault();
      searchInput.value = "";
      clearTimeout(searchTimer);
      searchSeq++;
      showList();
    }
  });

  // Pins, archives and deletes from other tabs (frames that chat.js passes on).
  document.addEventListener("chatsite:frame", (event) => {
    const f = event.detail;
    const li = itemOf(f.conversation_id);
    if ("pinned" in f && li && Boolean(li.dataset.pinned) !== Boolean(f.pinned)) setPinned(li, f.pinned);
    if (f.archived === true || f.deleted === true) {
      removeRow(f.conversation_id);
      if (f.conversation_id === currentId) {
        if (f.archived) aside.dataset.currentArchived = "1";
        else if (toastEl.hidden) toast("This conversation was deleted.", 8);
      }
    }
  });

  // A delete made just before this page loaded (kept in the session) can still be undone.
  if (!toastEl.hidden && toastEl.dataset.remaining) {
    toastTimer = setTimeout(hideToast, Math.max(0, Number(toastEl.dataset.remaining) * 1000 - 500));
  }
}

if (document.readyState === "complete") land();
else window.addEventListener("load", land, { once: true });
window.addEventListener("hashchange", land);
