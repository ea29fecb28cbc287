// Copy buttons: one on every code block (labelled with its language) and one under every
// message (a reply copies as its markdown source, as Claude wrote it).
// Used by the conversation page (chat.js imports addCopyButtons) and the shared snapshot page;
// watches the thread so replies that arrive later get their buttons too.
// Only textContent and DOM nodes are written here: the HTML itself is the server's sanitised HTML.

import { watchThreads } from "./watch.js";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function legacyCopy(text) {
  const ta = el("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.append(ta);
  ta.select();
  try { return document.execCommand("copy"); } finally { ta.remove(); }
}

// `text` may be a promise (a reply's source is fetched): ClipboardItem keeps the click's user
// activation while it resolves, where a plain `await` then writeText() may lose it.
export async function copyToClipboard(text) {
  if (typeof text !== "string" && navigator.clipboard?.write && window.ClipboardItem) {
    try {
      const blob = Promise.resolve(text).then((t) => new Blob([t], { type: "text/plain" }));
      await navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
      return true;
    } catch { /* fall through to writeText */ }
  }
  const value = await text;
  try {
    await navigator.clipboard.writeText(value);
    return true;
  } catch {
    return legacyCopy(value);
  }
}

function flash(button, label, ok) {
  button.textContent = ok ? "Copied" : "Copy failed";
  clearTimeout(button._copyTimer);
  button._copyTimer = setTimeout(() => (button.textContent = label), 1500);
}

function codeLanguage(code) {
  const cls = [...(code?.classList || [])].find((c) => c.startsWith("language-"));
  return cls ? cls.slice("language-".length) : "";
}

/** A "Copy" button (and the language, shown by CSS from data-lang) on every code block. */
export function addCopyButtons(root) {
  for (const pre of root.querySelectorAll(".markdown pre, pre.copyable")) {
    if (pre.parentElement?.classList.contains("code-wrap")) continue;
    const wrap = el("div", "code-wrap");
    const lang = codeLanguage(pre.querySelector("code"));
    if (lang) wrap.dataset.lang = lang;
    pre.replaceWith(wrap);
    wrap.append(pre);
    const button = el("button", "copy-code", "Copy");
    button.type = "button";
    button.setAttribute("aria-label", lang ? `Copy ${lang} code` : "Copy code");
    button.addEventListener("click", async () => {
      const code = pre.querySelector("code") || pre;
      flash(button, "Copy", await copyToClipboard(code.textContent));
    });
    wrap.append(button);
  }
}

// The markdown source of a message: kept in the page (<template class="msg-source">, shared
// snapshots), fetched from the owner's source URL (conversation page), or else its text.
function messageSource(article, thread) {
  const kept = article.querySelector(":scope > template.msg-source");
  if (kept) return kept.content.textContent;
  const body = article.querySelector(".msg-body");
  if (article.dataset.role === "user") return body ? body.textContent : ""; // the text as typed
  if (!thread?.dataset.sourceUrl || !article.dataset.messageId) return body ? body.innerText : "";
  const url = thread.dataset.sourceUrl.replace(/\/0\/source\/$/, `/${encodeURIComponent(article.dataset.messageId)}/source/`);
  return fetch(url, { credentials: "same-origin" }).then((r) => (r.ok ? r.text() : (body ? body.innerText : "")));
}

/** A "Copy" button in the footer of every finished message. */
export function addMessageCopyButtons(root) {
  for (const article of root.querySelectorAll(".msg[data-role]")) {
    if (article.classList.contains("status-streaming")) continue;
    // A message of the person: next to Edit (branches.js); a reply: in its footer.
    let footer = article.dataset.role === "user" ? article.querySelector(":scope > .msg-branch-bar") : null;
    footer ||= article.querySelector(":scope > .msg-footer");
    if (!footer) {
      footer = el("div", "msg-footer");
      article.append(footer);
    }
    if (article.querySelector(":scope > * > .msg-copy")) continue;
    const button = el("button", "linklike msg-copy", "Copy");
    button.type = "button";
    button.title = article.dataset.role === "assistant" ? "Copy this reply (markdown)" : "Copy this message";
    button.addEventListener("click", async (e) => {
      e.stopPropagation();
      const thread = article.closest(".thread");
      flash(button, "Copy", await copyToClipboard(messageSource(article, thread)));
    });
    // Before Continue/Retry (after the usage line), before Edit.
    const firstAction = footer.querySelector(":scope > [data-action], :scope > [data-branch-edit]");
    if (firstAction) firstAction.before(button);
    else footer.append(button);
  }
}

function enhance(root) {
  addCopyButtons(root);
  addMessageCopyButtons(root);
}

// Any button with data-copy-text (e.g. a share link) copies that text.
document.addEventListener("click", async (e) => {
  const button = e.target.closest?.("button[data-copy-text]");
  if (!button) return;
  const label = button.dataset.copyLabel || (button.dataset.copyLabel = button.textContent);
  flash(button, label, await copyToClipboard(button.dataset.copyText));
});

watchThreads(enhance, { classChanges: true });
