// The conversation page: one websocket, replies streamed by offset, nothing typed ever lost.
// Model output reaches the DOM only as text (while streaming) or as the server's sanitised HTML.
// Frame shapes: docs/protocol.md.

import { branchBar, branchDisconnected, branchFrame, initBranches } from "./branches.js";
import { addCopyButtons } from "./copy.js";

const state = JSON.parse(document.getElementById("chat-state").textContent);
const thread = document.getElementById("thread");
const input = document.getElementById("composer-input");
const form = document.getElementById("composer");
const sendButton = document.getElementById("send-button");
const stopButton = document.getElementById("stop-button");
const connStatus = document.getElementById("conn-status");
const notice = document.getElementById("notice");
const sidebar = document.getElementById("conv-list");
const convCost = document.getElementById("conv-cost");
const convCacheRate = document.getElementById("conv-cache-rate");
const replyStatus = document.getElementById("reply-status"); // what screen readers hear about replies
let announcedBusy = false;

const gens = new Map(); // generation id -> {el, body, node, have}
let socket = null;
let attempts = 0;
let everConnected = false;
let pendingClientId = null;
let reconnectTimer = null;
const knownTitles = new Map(); // conversation id -> title from a conversation.updated frame
let totals = null; // this conversation's usage; see setTotals
const counted = new Map(); // message id -> the usage of that reply already in `totals`
let endsSeen = 0; // replies ended here: a totals fetch that overlaps one is stale

// --- text offsets count Unicode code points, like the server ------------------------------
const SURROGATE = /[\uD800-\uDFFF]/;
const cpLen = (s) => { if (!SURROGATE.test(s)) return s.length; let n = 0; for (const _ of s) n++; return n; };
const cpSlice = (s, k) => (SURROGATE.test(s) ? Array.from(s).slice(k).join("") : s.slice(k));

// --- money: decimal strings from the server ("0.00421500", "8E-8"), added and rounded exactly --
// Same rules as conversations/formatting.py, so a reload never changes a figure.
function dec(value) {
  const m = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(String(value ?? "0").trim());
  if (!m || !(m[1] || m[2])) return { units: 0n, scale: 0 };
  const frac = m[2] || "";
  let digits = (m[1] || "0") + frac;
  let scale = frac.length - Number(m[3] || 0);
  if (scale < 0) { digits += "0".repeat(-scale); scale = 0; }
  return { units: BigInt(digits), scale };
}
const pow10 = (n) => 10n ** BigInt(n);
const atScale = (d, scale) => d.units * pow10(scale - d.scale);
function decAdd(a, b, sign = 1n) {
  const scale = Math.max(a.scale, b.scale);
  const units = atScale(a, scale) + sign * atScale(b, scale);
  return { units: units < 0n ? 0n : units, scale };
}
function decRound(d, places) {
  if (d.scale <= places) return { units: atScale(d, places), scale: places };
  const div = pow10(d.scale - places);
  let q = d.units / div;
  if (2n * (d.units % div) >= div) q += 1n;
  return { units: q, scale: places };
}
function decFixed(d) {
  const s = d.units.toString().padStart(d.scale + 1, "0");
  const int = BigInt(s.slice(0, s.length - d.scale)).toLocaleString("en-US");
  return d.scale ? `${int}.${s.slice(s.length - d.scale)}` : int;
}
function formatUsd(value) {
  const d = typeof value === "object" ? value : dec(value);
  if (d.units <= 0n) return "$0.00";
  let places;
  if (d.units >= pow10(d.scale)) places = 2;
  else if (d.units * 10000n >= pow10(d.scale)) places = 4;
  else places = 1 - (d.units.toString().length - 1 - d.scale); // two significant digits
  return `$${decFixed(decRound(d, places))}`;
}
function exactUsd(value) {
  const d = dec(value);
  if (d.units === 0n) return "0";
  let s = decFixed(d).replace(/,/g, "");
  if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
  return s;
}
const fmtTokens = (n) => Number(n || 0).toLocaleString("en-US");
function hitRate(read, prompt) {
  if (prompt <= 0) return "—";
  const percent = Math.floor((200 * read + prompt) / (2 * prompt));
  return percent === 0 && read > 0 ? "<1%" : `${percent}%`;
}

// --- rendering ---------------------------------------------------------------------------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function nearBottom() {
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
}
function scrollDown(force) {
  if (force || nearBottom()) thread.scrollTop = thread.scrollHeight;
}
// Messages out of view are laid out lazily (content-visibility in app.css): their heights are
// estimates until drawn, so the end moves while the last ones are drawn. After a load or a new
// message, stay at the end until it stops moving (a few frames), unless the person scrolls.
let settling = 0; // the current settle's number; 0 when none runs or the person scrolled
let settleRuns = 0;
for (const type of ["wheel", "touchstart", "mousedown"]) thread.addEventListener(type, () => { settling = 0; }, { passive: true });
function settleAtBottom() {
  const run = ++settleRuns;
  settling = run;
  let frames = 0;
  let still = 0;
  let last = -1;
  const step = () => {
    if (settling !== run || frames++ > 60) return;
    thread.scrollTop = thread.scrollHeight;
    still = thread.scrollHeight === last ? still + 1 : 0;
    last = thread.scrollHeight;
    if (still < 3) requestAnimationFrame(step);
    else settling = 0;
  };
  step();
}

// addCopyButtons (code blocks) comes from copy.js, which also puts a Copy button under each message.

function messageElement(m) {
  const article = el("article", `msg msg-${m.role} status-${m.status}`);
  article.dataset.messageId = m.id;
  article.dataset.role = m.role;
  if (m.generation_id) article.dataset.generationId = m.generation_id;
  const role = el("div", "msg-role", m.role === "user" ? "You" : "Claude ");
  if (m.role === "assistant") role.append(el("span", "msg-model", m.model || ""));
  article.append(role);
  const body = el("div", m.role === "user" || m.status === "streaming" ? "msg-body streaming-text" : "msg-body markdown");
  article.append(body, el("div", "msg-footer"));
  if (m.role === "user") body.textContent = m.text;
  else if (m.status !== "streaming") finishElement(article, m);
  else addContextNote(article.querySelector(".msg-footer"), m);
  article.append(branchBar(m)); // ‹ 2/3 › and Edit (branches.js)
  return article;
}

function finishElement(article, m) {
  article.className = `msg msg-${m.role} status-${m.status}`;
  const body = article.querySelector(".msg-body");
  body.className = "msg-body markdown";
  body.innerHTML = m.html || ""; // sanitised server-side (conversations/rendering.py)
  addCopyButtons(body);
  const footer = article.querySelector(".msg-footer");
  footer.replaceChildren();
  addContextNote(footer, m);
  if (m.error) {
    const err = el("div", "msg-error", m.error);
    err.setAttribute("role", "alert");
    footer.append(err);
  } else if (m.status === "stopped") {
    footer.append(el("div", "msg-note", "Stopped."));
  }
  if (m.role === "assistant") {
    footer.append(usageLine(m.usage || {}));
    const resumable = ["stopped", "error", "interrupted"].includes(m.status) || m.error_code === "max_tokens";
    if (resumable && article.querySelector(".msg-body").textContent.trim()) footer.append(actionButton("continue", "Continue"));
    footer.append(actionButton("regenerate", "Retry"));
  }
}

// The discreet line under a reply; the same text as templates/conversations/_message.html.
function usageLine(u) {
  const read = u.cache_read_input_tokens || 0;
  const wrote = u.cache_creation_input_tokens || 0;
  const line = el("span", "msg-usage", `${fmtTokens(u.input_tokens)} in · ${fmtTokens(u.output_tokens)} out`);
  if (read) {
    line.classList.add("cache-read");
    line.append(" · ", el("span", "msg-usage-read", `cache read ${fmtTokens(read)}`));
  }
  if (wrote) {
    line.classList.add("cache-write");
    line.append(" · ", el("span", "msg-usage-write", `${read ? "" : "cache "}wrote ${fmtTokens(wrote)}`));
  }
  line.append(" · ", el("span", "msg-usage-cost", formatUsd(u.cost)));
  line.title = `Input: ${fmtTokens(u.input_tokens)} tokens (not cached) · Output: ${fmtTokens(u.output_tokens)} tokens · `
    + `Cache write: ${fmtTokens(wrote)} tokens · Cache read: ${fmtTokens(read)} tokens · `
    + `Cost: $${exactUsd(u.cost)} at the prices of the time of this reply`;
  line.dataset.cost = u.cost || "0";
  line.dataset.promptTokens = (u.input_tokens || 0) + wrote + read;
  line.dataset.cacheReadTokens = read;
  return line;
}

function addContextNote(footer, m) {
  // Claude did not see the whole thread for this reply (the oldest messages were trimmed).
  if (m.role !== "assistant" || !m.context_note) return;
  const note = el("div", "msg-context-note", m.context_note);
  note.setAttribute("role", "note");
  footer.append(note);
}

function actionButton(action, label) {
  const button = el("button", `linklike msg-${action}`, label);
  button.type = "button";
  button.dataset.action = action;
  return button;
}

// --- generations -------------------------------------------------------------------------
function track(gid, article, text) {
  const body = article.querySelector(".msg-body");
  body.replaceChildren();
  const node = document.createTextNode(text || "");
  body.append(node);
  const g = { el: article, body, node, have: cpLen(text || "") };
  gens.set(gid, g);
  updateBusy();
  return g;
}

function onDelta(f) {
  const g = gens.get(f.generation_id);
  if (!g) return; // not a reply this page shows (e.g. superseded); ignore
  const end = f.offset + cpLen(f.text);
  if (f.offset > g.have) {
    // A gap (a dropped frame): ask once for everything from what we have.
    if (g.repairing !== g.have) {
      g.repairing = g.have;
      send({ type: "follow", generation_id: f.generation_id, offset: g.have });
    }
    return;
  }
  if (end <= g.have) return; // a duplicate
  const fresh = f.offset === g.have ? f.text : cpSlice(f.text, g.have - f.offset);
  const stick = nearBottom();
  g.node.appendData(fresh);
  g.have = end;
  showReplyNotice(g, null); // text is moving again
  if (stick) scrollDown(true);
}

function onNotice(f) {
  // Claude is busy and the server retries, nothing has come for a while, or the reply waits to
  // be saved: said under the reply until the next text or its end.
  const g = gens.get(f.generation_id);
  if (g) showReplyNotice(g, f);
}

function showReplyNotice(g, f) {
  let line = g.el.querySelector(".msg-footer .msg-notice");
  if (!f) { line?.remove(); return; }
  if (!line) {
    line = el("div", "msg-notice");
    line.setAttribute("role", "status");
    g.el.querySelector(".msg-footer")?.prepend(line);
  }
  line.dataset.code = f.code;
  line.textContent = f.message;
}

function onEnd(f) {
  if (f.conversation_id !== state.conversationId) {
    setSidebarGenerating(f.conversation_id, false, f.conversation_title);
    announce(f);
    return;
  }
  const g = gens.get(f.generation_id);
  const article = g ? g.el : thread.querySelector(`[data-message-id="${f.message.id}"]`);
  gens.delete(f.generation_id);
  if (article) {
    const stick = nearBottom();
    finishElement(article, f.message);
    if (stick) scrollDown(true);
  }
  countReply(f.message.id, f.message.usage);
  setSidebarGenerating(state.conversationId, false, f.conversation_title);
  updateBusy();
}

function onCreated(f) {
  if (f.conversation_title) knownTitles.set(f.conversation_id, f.conversation_title); // read when it was sent: fresh
  setSidebarGenerating(f.conversation_id, true, f.conversation_title);
  if (f.conversation_id !== state.conversationId) return;
  if (f.conversation_title) setTitle(f.conversation_title);
  // The thread is the parent chain: drop anything after the new message's parent (a retried reply).
  const parentId = f.user_message ? f.user_message.parent_id : f.reply.parent_id;
  truncateAfter(parentId);
  if (f.user_message && !thread.querySelector(`[data-message-id="${f.user_message.id}"]`)) {
    thread.append(messageElement(f.user_message));
  }
  let article = thread.querySelector(`[data-message-id="${f.reply.id}"]`);
  if (article) {
    // "continue": the same message, streaming again after its kept text.
    article.className = "msg msg-assistant status-streaming";
    article.dataset.generationId = f.reply.generation_id;
    article.querySelector(".msg-body").className = "msg-body streaming-text";
    article.querySelector(".msg-footer").replaceChildren();
    addContextNote(article.querySelector(".msg-footer"), f.reply);
  } else {
    article = messageElement(f.reply);
    thread.append(article);
  }
  if (!gens.has(f.reply.generation_id)) track(f.reply.generation_id, article, f.reply.text || "");
  if (f.client_id && f.client_id === pendingClientId) {
    pendingClientId = null;
    input.value = "";
    input.disabled = false;
    clearNotice();
  }
  settleAtBottom();
}

function truncateAfter(parentId) {
  if (!parentId) {
    // A new first message (an edit of the first one): nothing above it stays.
    thread.replaceChildren();
    return;
  }
  let parent = thread.querySelector(`[data-message-id="${parentId}"]`);
  if (!parent) return;
  // A summary marker right after the parent still belongs to the thread.
  while (parent.nextElementSibling?.classList.contains("memory-marker")) parent = parent.nextElementSibling;
  while (parent.nextElementSibling) parent.nextElementSibling.remove();
}

function updateBusy() {
  const busy = gens.size > 0;
  // Send and Stop swap places: keyboard focus moves with them instead of falling to <body>.
  const focusWas = document.activeElement;
  stopButton.hidden = !busy;
  sendButton.hidden = busy;
  if (busy && focusWas === sendButton) stopButton.focus();
  if (!busy && focusWas === stopButton) input.focus();
  // One short status per reply, not every streamed word (the thread is not a live region).
  if (replyStatus && busy !== announcedBusy) {
    announcedBusy = busy;
    replyStatus.textContent = busy ? "Claude is answering. Escape stops the reply." : "Claude's reply has ended.";
  }
}

// --- sidebar and announcements ------------------------------------------------------------
function sidebarItem(conversationId, title) {
  let item = sidebar.querySelector(`[data-conversation-id="${conversationId}"]`);
  if (!item) {
    // Started in another tab: list it too.
    item = el("li", "conv-item");
    item.dataset.conversationId = conversationId;
    const a = el("a");
    a.href = `/chat/${conversationId}/`;
    a.append(el("span", "conv-title", title || "New chat"), el("span", "dot"));
    item.append(a);
    sidebar.querySelector(".conv-empty")?.remove();
  }
  return item;
}

function setSidebarGenerating(conversationId, on, title) {
  if (!sidebar) return;
  title = knownTitles.get(conversationId) || title; // an end frame carries the title of when it was sent
  const item = sidebarItem(conversationId, title);
  item.classList.toggle("generating", on);
  if (title) item.querySelector(".conv-title").textContent = title;
  if (on) sidebar.prepend(item); // newest activity first, as the server orders it
}

function announce(f) {
  const word = f.message.status === "complete" ? "Reply ready" : `Reply ${f.message.status}`;
  showNotice(`${word} in “${f.conversation_title || "another conversation"}”.`, `/chat/${f.conversation_id}/`);
}

function showNotice(text, href, link) {
  notice.replaceChildren();
  if (href) {
    const a = el("a", "", text);
    a.href = href;
    notice.append(a);
  } else {
    notice.textContent = text;
  }
  if (link) {
    // e.g. "See your usage" after the refusal's own explanation
    const a = el("a", "notice-link", link.text);
    a.href = link.href;
    notice.append(" ", a);
  }
  notice.classList.toggle("notice-error", Boolean(link && link.error));
  notice.hidden = false;
}
function clearNotice() {
  notice.hidden = true;
  notice.replaceChildren();
}

// --- titles, summaries and the conversation's totals ---------------------------------------
function setTitle(title) {
  document.getElementById("conversation-title").textContent = title;
  document.title = `${title} · Chatsite`;
}

function onUpdated(f) {
  // A background task named or summarised a conversation (any of the person's conversations).
  if (f.title) {
    knownTitles.set(f.conversation_id, f.title);
    const item = sidebar?.querySelector(`[data-conversation-id="${f.conversation_id}"]`);
    if (item) item.querySelector(".conv-title").textContent = f.title;
  }
  if (f.conversation_id !== state.conversationId) return;
  if (f.title) setTitle(f.title);
  refreshFromServer(); // the new summary's text, and the totals with the title's or summary's cost
}

function setTotals(t) {
  if (!t) return;
  totals = {
    cost: dec(t.cost), replyCost: dec(t.replyCost), summaryCost: dec(t.summaryCost), titleCost: dec(t.titleCost),
    promptTokens: t.promptTokens || 0, cacheReadTokens: t.cacheReadTokens || 0,
  };
  counted.clear();
  for (const line of thread.querySelectorAll(".msg-usage[data-cost]")) {
    const id = Number(line.closest(".msg")?.dataset.messageId);
    if (id) counted.set(id, usageOfLine(line));
  }
  renderTotals();
}

function usageOfLine(line) {
  return { cost: dec(line.dataset.cost), prompt: Number(line.dataset.promptTokens) || 0, read: Number(line.dataset.cacheReadTokens) || 0 };
}

function countReply(messageId, usage) {
  // A finished reply's usage is its running total (a continued reply adds up its generations):
  // add what is new since this page last counted it.
  endsSeen += 1;
  if (!totals || !usage || usage.cost === undefined) return;
  const now = { cost: dec(usage.cost), prompt: (usage.input_tokens || 0) + (usage.cache_creation_input_tokens || 0) + (usage.cache_read_input_tokens || 0), read: usage.cache_read_input_tokens || 0 };
  const before = counted.get(messageId) || { cost: dec("0"), prompt: 0, read: 0 };
  const delta = decAdd(now.cost, before.cost, -1n);
  totals.cost = decAdd(totals.cost, delta);
  totals.replyCost = decAdd(totals.replyCost, delta);
  totals.promptTokens += Math.max(0, now.prompt - before.prompt);
  totals.cacheReadTokens += Math.max(0, now.read - before.read);
  counted.set(messageId, now);
  renderTotals();
}

function renderTotals() {
  if (!totals || !convCost) return;
  convCost.textContent = formatUsd(totals.cost);
  convCost.title = `Everything this conversation cost, at the prices of the time: replies ${formatUsd(totals.replyCost)}, `
    + `summaries ${formatUsd(totals.summaryCost)}, titles ${formatUsd(totals.titleCost)}`;
  convCacheRate.textContent = hitRate(totals.cacheReadTokens, totals.promptTokens);
  convCacheRate.title = `Share of the replies' prompt tokens read from the prompt cache: ${fmtTokens(totals.cacheReadTokens)} of ${fmtTokens(totals.promptTokens)}`;
}

let refreshing = null;
async function refreshFromServer() {
  if (refreshing) { refreshing.again = true; return; }
  refreshing = { again: false };
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const ends = endsSeen;
      const response = await fetch(state.summariesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      for (const s of data.summaries) insertSummaryMarker(s);
      // A reply that ended meanwhile may or may not be in these totals: ask again.
      if (ends === endsSeen && !refreshing.again) { setTotals(data.totals); return; }
      refreshing.again = false;
    }
  } catch {
    // The totals stay as they are; a reload shows the server's figures.
  } finally {
    refreshing = null;
  }
}

function insertSummaryMarker(s) {
  if (thread.querySelector(`.memory-marker[data-summary-id="${s.id}"]`)) return;
  const upto = thread.querySelector(`.msg[data-message-id="${s.upto_id}"]`);
  if (!upto) return; // not on the thread this page shows
  let after = upto;
  while (after.nextElementSibling?.classList.contains("memory-marker")) after = after.nextElementSibling;
  const marker = el("div", "memory-marker");
  marker.setAttribute("role", "note");
  marker.dataset.summaryId = s.id;
  marker.dataset.uptoId = s.upto_id;
  const line = el("div", "memory-marker-line");
  line.append(el("span", "", "Claude's memory of the messages above was summarised here"));
  const details = el("details", "memory-summary");
  const body = el("div", "markdown");
  body.innerHTML = s.html || ""; // sanitised server-side (conversations/rendering.py)
  details.append(el("summary", "", "Read the summary Claude works from"), body);
  marker.append(line, details);
  after.after(marker);
}

// --- the socket --------------------------------------------------------------------------
function send(frame) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(frame));
  return true;
}

function setConn(text, cls) {
  connStatus.textContent = text;
  connStatus.className = `conn-status ${cls || ""}`;
}

function connect() {
  clearTimeout(reconnectTimer);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}${state.wsPath}`);
  socket.addEventListener("open", () => {
    attempts = 0;
    setConn("", "");
    // Resume every reply we show as streaming, from the text we already have.
    for (const [gid, g] of gens) send({ type: "follow", generation_id: gid, offset: g.have });
    if (state.pendingMessage) {
      // The first message typed on the new-chat page: sent once, kept in the box until confirmed.
      input.value = state.pendingMessage;
      state.pendingMessage = "";
      submit();
    }
  });
  socket.addEventListener("message", (event) => {
    const f = JSON.parse(event.data);
    if (f.type !== "delta") branchFrame(f); // versions: `thread` frames, pending edits
    switch (f.type) {
      case "hello": if (everConnected) resync(f); everConnected = true; break;
      case "delta": onDelta(f); break;
      case "generation.end": onEnd(f); break;
      case "notice": onNotice(f); break;
      case "message.created": onCreated(f); break;
      case "error": onError(f); break;
      case "conversation.updated": onUpdated(f); break;
      default: break;
    }
    // sidebar.js follows pins, archives and deletes made in other tabs.
    if (f.type === "conversation.updated") document.dispatchEvent(new CustomEvent("chatsite:frame", { detail: f }));
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 4401) {
      // The session ended (logged out, new password, expired, account closed): no reconnect.
      // Stay on the page, so nothing typed is lost, and offer to log in again.
      pendingClientId = null;
      setConn("Logged out", "offline");
      showNotice("Your session has ended.", null, { text: "Log in again", href: `/accounts/login/?next=${encodeURIComponent(location.pathname)}`, error: true });
      return;
    }
    if (event.code === 4404) { setConn("This conversation is not available.", "offline"); return; }
    if (pendingClientId) {
      // The send may not have reached the server: keep the text and let the person resend.
      pendingClientId = null;
      input.disabled = false;
      showNotice("Connection lost before your message was confirmed. Your text is still in the box.");
    }
    branchDisconnected(); // an unconfirmed edit stays in its editor
    const delay = Math.min(10000, 500 * 2 ** attempts) * (0.75 + Math.random() / 2);
    attempts += 1;
    setConn(`Offline — reconnecting in ${Math.ceil(delay / 1000)} s…`, "offline");
    reconnectTimer = setTimeout(connect, delay);
  });
}

async function resync(hello) {
  // Back from offline: if messages were added meanwhile (e.g. from another tab), take the
  // thread from the server-rendered page (sanitised there) and follow what is streaming.
  if (hello.current_leaf_id === null || thread.querySelector(`[data-message-id="${hello.current_leaf_id}"]`)) return;
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.getElementById("thread");
  const freshState = JSON.parse(doc.getElementById("chat-state").textContent);
  if (!fresh) return;
  gens.clear();
  thread.replaceChildren(...fresh.childNodes);
  addCopyButtons(thread);
  setTotals(freshState.totals);
  if (freshState.streaming) {
    const article = thread.querySelector(`[data-message-id="${freshState.streaming.messageId}"]`);
    if (article) {
      const g = track(freshState.streaming.generationId, article, freshState.streaming.text);
      send({ type: "follow", generation_id: freshState.streaming.generationId, offset: g.have });
    }
  }
  updateBusy();
  settleAtBottom();
}

function onError(f) {
  if (f.client_id && f.client_id === pendingClientId) {
    pendingClientId = null;
    input.disabled = false;
    input.focus();
  }
  if (f.code === "over_budget") {
    // The message says what was used and when it resets; the text stays in the box.
    showNotice(f.message, null, { text: "See your usage", href: "/usage/", error: true });
    return;
  }
  showNotice(f.message);
}

function submit() {
  const content = input.value;
  if (!content.trim() || pendingClientId) return;
  if (content.length > state.maxInputChars) {
    showNotice(`That message is ${content.length.toLocaleString()} characters; the limit is ${state.maxInputChars.toLocaleString()}.`);
    return;
  }
  const clientId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random());
  if (!send({ type: "send", content, client_id: clientId })) {
    showNotice("Not connected right now. Your message is kept; it can be sent once the connection is back.");
    return;
  }
  pendingClientId = clientId;
  input.disabled = true; // kept (not cleared) until the server confirms it stored the message
}

form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
});
stopButton.addEventListener("click", () => {
  for (const gid of gens.keys()) send({ type: "stop", generation_id: gid });
});
thread.addEventListener("click", (e) => {
  const button = e.target.closest("[data-action]");
  if (!button || gens.size) return;
  const article = button.closest(".msg");
  if (!send({ type: button.dataset.action, message_id: Number(article.dataset.messageId), client_id: "" })) {
    showNotice("Not connected right now. Try again once the connection is back.");
  }
});

// --- start -------------------------------------------------------------------------------
initBranches({
  conversationId: state.conversationId, thread, send, messageElement, showNotice, clearNotice,
  isBusy: () => gens.size > 0,
  follow: (gid, article, text) => {
    const known = gens.get(gid);
    if (known && known.el.isConnected) return;
    const g = track(gid, article, known ? known.node.data : text); // re-rendered: keep what we have
    send({ type: "follow", generation_id: gid, offset: g.have });
  },
  afterRender: refreshFromServer, // summary markers on the new branch
  reload: () => resync({ current_leaf_id: 0 }), // the server's thread, as after being offline
  maxInputChars: state.maxInputChars,
});
addCopyButtons(thread);
setTotals(state.totals);
if (state.streaming) {
  const article = thread.querySelector(`[data-message-id="${state.streaming.messageId}"]`);
  if (article) track(state.streaming.generationId, article, state.streaming.text);
}
settleAtBottom();
connect();
