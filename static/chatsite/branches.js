// Versions of messages: edit one of your messages, flip between versions with `‹ 2/3 ›`.
// Every version stays stored on the server; the thread on screen is the branch Claude is sent.
// Frames: docs/protocol.md (`edit`, `switch_branch`, `thread`). Text only ever reaches the DOM
// as textContent or as the server's sanitised HTML (through chat.js's messageElement).

const BUSY = "Claude is still answering in this conversation. Wait for the reply to finish or press Stop, then switch versions.";

let hooks = null; // from chat.js, see initBranches
const pendingEdits = new Map(); // client id -> {article, input, save}
const pendingSwitches = new Map(); // client id -> where the flipped message was on screen

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const newClientId = () => (crypto.randomUUID ? crypto.randomUUID() : `b-${Date.now()}-${Math.random()}`);
const articles = () => [...hooks.thread.querySelectorAll(":scope > .msg")];

// --- the bar under a message: ‹ k/n › and Edit; the same markup as _branch_bar.html -----------
export function branchBar(m) {
  const bar = el("div", "msg-branch-bar");
  fillBar(bar, m);
  return bar;
}

function fillBar(bar, m) {
  bar.replaceChildren();
  const s = m.siblings;
  if (s && s.ids.length > 1) {
    const nav = el("nav", "branch-nav");
    nav.setAttribute("aria-label", "Versions of this message");
    nav.append(
      navButton("branch-prev", "‹", "Previous version", s.ids[s.index - 1]),
      el("span", "branch-pos", `${s.index + 1}/${s.ids.length}`),
      navButton("branch-next", "›", "Next version", s.ids[s.index + 1]),
    );
    bar.append(nav);
  }
  if (m.role === "user") {
    const edit = el("button", "linklike msg-edit", "Edit");
    edit.type = "button";
    edit.dataset.branchEdit = "";
    bar.append(edit);
  }
  bar.hidden = !bar.childElementCount;
}

function navButton(cls, text, label, target) {
  const button = el("button", cls, text);
  button.type = "button";
  button.setAttribute("aria-label", label);
  button.title = label;
  if (target === undefined) button.disabled = true;
  else button.dataset.branchTarget = target;
  return button;
}

function setBar(article, m) {
  const bar = article.querySelector(":scope > .msg-branch-bar");
  if (bar) fillBar(bar, m);
  else article.append(branchBar(m));
}

// --- flipping between versions ------------------------------------------------------------
function switchTo(button) {
  if (hooks.isBusy()) {
    hooks.showNotice(BUSY);
    return;
  }
  const article = button.closest(".msg");
  const clientId = newClientId();
  if (!hooks.send({ type: "switch_branch", message_id: Number(button.dataset.branchTarget), client_id: clientId })) {
    hooks.showNotice("Not connected right now. Try again once the connection is back.");
    return;
  }
  pendingSwitches.set(clientId, {
    index: articles().indexOf(article),
    top: article.getBoundingClientRect().top,
    button: button.classList.contains("branch-prev") ? "branch-prev" : "branch-next",
  });
}

// The visible thread after a switch (here or in another tab): keep what did not change, render
// the rest from the frame's messages.
function renderThread(f) {
  const shown = articles();
  let keep = 0;
  while (keep < shown.length && keep < f.messages.length && Number(shown[keep].dataset.messageId) === f.messages[keep].id) keep++;
  for (let i = 0; i < keep; i++) setBar(shown[i], f.messages[i]);
  if (keep < shown.length) {
    const first = shown[keep];
    while (first.nextSibling) first.nextSibling.remove();
    first.remove();
  }
  for (const m of f.messages.slice(keep)) {
    const article = hooks.messageElement(m);
    hooks.thread.append(article);
    if (m.status === "streaming" && m.generation_id) hooks.follow(m.generation_id, article, m.text || "");
  }
  const anchor = pendingSwitches.get(f.client_id);
  pendingSwitches.delete(f.client_id);
  const now = anchor ? articles()[anchor.index] : null;
  if (now) {
    // The new version appears where the old one was, not wherever the page's height puts it,
    // and the keyboard stays on the arrow that was pressed (or the other one, at either end).
    hooks.thread.scrollTop += now.getBoundingClientRect().top - anchor.top;
    const other = anchor.button === "branch-prev" ? "branch-next" : "branch-prev";
    const focus = [anchor.button, other].map((cls) => now.querySelector(`.branch-nav .${cls}`)).find((b) => b && !b.disabled);
    focus?.focus({ preventScroll: true });
    hooks.clearNotice();
  }
  hooks.afterRender();
}

// --- editing one of the person's messages -------------------------------------------------
function openEditor(article) {
  if (!article) return;
  const open = article.querySelector(":scope > .msg-editor textarea");
  if (open) {
    open.focus();
    return;
  }
  const body = article.querySelector(".msg-body");
  const form = el("form", "msg-editor");
  const input = el("textarea", "msg-editor-input");
  input.value = body.textContent;
  input.rows = Math.min(12, Math.max(2, input.value.split("\n").length + 1));
  input.setAttribute("aria-label", "Edit your message");
  const hint = el("span", "msg-editor-hint", "Sent as a new version; the original stays one click away.");
  const cancel = el("button", "btn msg-editor-cancel", "Cancel");
  cancel.type = "button";
  const save = el("button", "btn btn-primary msg-editor-save", "Save & submit");
  save.type = "submit";
  const actions = el("div", "msg-editor-actions");
  actions.append(hint, cancel, save);
  form.append(input, actions);
  article.classList.add("editing");
  body.after(form);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitEdit(article, input, save);
  });
  cancel.addEventListener("click", () => closeEditor(article));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      closeEditor(article);
    } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function closeEditor(article) {
  for (const [clientId, p] of pendingEdits) if (p.article === article) pendingEdits.delete(clientId);
  article.querySelector(":scope > .msg-editor")?.remove();
  article.classList.remove("editing");
  article.querySelector("[data-branch-edit]")?.focus();
}

function submitEdit(article, input, save) {
  if (input.disabled) return;
  const content = input.value;
  if (!content.trim()) {
    hooks.showNotice("Type a message first.");
    input.focus();
    return;
  }
  if (content.length > hooks.maxInputChars) {
    hooks.showNotice(`That message is ${content.length.toLocaleString()} characters; the limit is ${hooks.maxInputChars.toLocaleString()}.`);
    return;
  }
  const clientId = newClientId();
  if (!hooks.send({ type: "edit", message_id: Number(article.dataset.messageId), content, client_id: clientId })) {
    hooks.showNotice("Not connected right now. Your edit is kept; submit it again once the connection is back.");
    return;
  }
  pendingEdits.set(clientId, { article, input, save });
  input.disabled = true; // kept (not closed) until the server confirms it stored the new version
  save.disabled = true;
}

function releaseEdit(p) {
  p.input.disabled = false;
  p.save.disabled = false;
  if (p.article.isConnected) p.input.focus();
}

// --- wiring --------------------------------------------------------------------------------

// Every frame but deltas, from chat.js's socket.
export function branchFrame(f) {
  if (!hooks) return;
  if (f.type === "thread") {
    if (f.conversation_id === hooks.conversationId) renderThread(f);
    return;
  }
  if (f.type === "message.created" && f.conversation_id === hooks.conversationId) {
    // New messages hang under their parent; if this page shows another branch (it missed a
    // switch), chat.js cannot place them: take the thread from the server instead.
    const parentId = f.user_message ? f.user_message.parent_id : f.reply.parent_id;
    if (parentId && !hooks.thread.querySelector(`.msg[data-message-id="${parentId}"]`)) setTimeout(hooks.reload, 0);
  }
  const pending = pendingEdits.get(f.client_id);
  if (!pending) return;
  pendingEdits.delete(f.client_id);
  if (f.type === "message.created") {
    // Stored: chat.js has replaced the old version with the new one and its reply.
    if (pending.article.isConnected) closeEditor(pending.article);
    hooks.clearNotice();
  } else if (f.type === "error") {
    releaseEdit(pending); // chat.js shows the reason; the edited text stays in the editor
  }
}

export function branchDisconnected() {
  pendingSwitches.clear();
  if (!pendingEdits.size) return;
  for (const p of pendingEdits.values()) releaseEdit(p);
  pendingEdits.clear();
  hooks.showNotice("Connection lost before your edit was confirmed. Your text is still in the editor.");
}

// hooks: {conversationId, thread, send, messageElement, follow, showNotice, clearNotice, isBusy,
//         afterRender, reload, maxInputChars}
export function initBranches(h) {
  hooks = h;
  h.thread.addEventListener("click", (e) => {
    const flip = e.target.closest("[data-branch-target]");
    if (flip) {
      switchTo(flip);
      return;
    }
    const edit = e.target.closest("[data-branch-edit]");
    if (edit) openEditor(edit.closest(".msg"));
  });
}
