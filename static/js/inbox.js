/* The inbox page's behaviour. No framework: htmx does the requests and swaps, this file adds
   - keyed upserts (bubbles by data-message-id, rows by data-chat-id) so a re-sent fragment replaces, never doubles;
   - the websocket's lifecycle: "Reconnecting…" banner, backoff with jitter, at most 10 tries, a Reconnect button,
     and a re-sync on every (re)connect (channel layers deliver at most once);
   - the composer: Enter sends, Shift+Enter adds a line, optimistic bubble, a draft per chat;
   - pane layout (sidebar collapsed, list width) kept in localStorage; one pane at a time on phones.
   Loaded with `defer` after htmx, so the DOM and htmx exist. CSP-friendly: no inline script, no eval. */
(function () {
  "use strict";

  var MAX_TRIES = 10;
  var BASE_DELAY_MS = 500;
  var MAX_DELAY_MS = 15000;
  var LAYOUT_KEY = "inbox:layout";

  var inbox = document.getElementById("inbox");
  if (!inbox || !window.htmx) return;

  /* ------------------------------------------------------------ theme */

  var themeMeta = document.querySelector('meta[name="theme-primary"]');
  if (themeMeta && themeMeta.content) inbox.style.setProperty("--primary", themeMeta.content);

  /* ------------------------------------------------------------ keyed upserts */

  function sortKey(el) { return el.getAttribute("data-sort"); }

  function findExisting(list, node) {
    var id = node.getAttribute("data-message-id");
    if (id) {
      var byId = list.querySelector('[data-message-id="' + CSS.escape(id) + '"]');
      if (byId) return byId;
    }
    var cmid = node.getAttribute("data-client-message-id");
    if (cmid) {
      var byClient = list.querySelector('[data-client-message-id="' + CSS.escape(cmid) + '"]');
      if (byClient) return byClient;
    }
    if (node.id) {
      var byDomId = document.getElementById(node.id);
      if (byDomId && list.contains(byDomId)) return byDomId;
    }
    return null;
  }

  function insertSorted(list, node, descending) {
    var key = sortKey(node);
    var children = list.children;
    for (var i = 0; i < children.length; i++) {
      var other = sortKey(children[i]);
      if (other === null || children[i] === node) continue;
      if (descending ? other < key : other > key) {
        list.insertBefore(node, children[i]);
        return;
      }
    }
    list.appendChild(node);
  }

  /* Insert or replace each element of `fragment` in `list` (ordered by data-sort). */
  function upsertInto(list, fragment) {
    var descending = list.getAttribute("data-keyed") === "desc";
    var scroller = list.closest(".message-scroll");
    var fromBottom = scroller ? scroller.scrollHeight - scroller.scrollTop : 0;
    var nearBottom = scroller ? fromBottom - scroller.clientHeight < 80 : false;
    var appended = false;
    var inserted = [];
    Array.prototype.slice.call(fragment.children).forEach(function (node) {
      var existing = findExisting(list, node);
      if (existing && node.classList.contains("day-divider")) return; // one divider per day
      if (existing) {
        var moves = descending && sortKey(existing) !== sortKey(node);
        if (moves) { existing.remove(); insertSorted(list, node, descending); }
        else existing.replaceWith(node);
      } else {
        var empty = list.querySelector(".message-empty");
        if (empty) empty.remove();
        insertSorted(list, node, descending);
        if (!descending && node === list.lastElementChild) appended = true;
      }
      inserted.push(node);
    });
    inserted.forEach(function (node) { htmx.process(node); });
    if (scroller) {
      if (appended && nearBottom) scroller.scrollTop = scroller.scrollHeight;
      else if (!appended) scroller.scrollTop = scroller.scrollHeight - fromBottom; // older messages above: keep place
    }
    markOpenRow();
    return inserted;
  }

  document.body.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    var fragment = evt.detail.fragment;
    if (!target || !target.hasAttribute("data-keyed") || !fragment || fragment.id === target.id) return;
    // A fragment for another chat than the one shown (the page switched chats meanwhile) is dropped.
    var forChat = fragment.getAttribute && fragment.getAttribute("data-chat-id");
    if (forChat && target.getAttribute("data-chat-id") && forChat !== target.getAttribute("data-chat-id")) {
      evt.detail.shouldSwap = false;
      return;
    }
    upsertInto(target, fragment);
    evt.detail.shouldSwap = false;
  });

  /* ------------------------------------------------------------ what the page shows */

  function openChatId() {
    var conversation = document.getElementById("conversation");
    return conversation ? conversation.getAttribute("data-chat-id") : "";
  }

  function listFilters() {
    var region = document.getElementById("chat-list-region");
    if (!region) return { view: "all", status: "open", q: "" };
    return {
      view: region.getAttribute("data-view") || "all",
      status: region.getAttribute("data-status") || "open",
      q: region.getAttribute("data-q") || "",
    };
  }

  function markOpenRow() {
    var id = openChatId();
    inbox.setAttribute("data-open-chat-id", id);
    document.querySelectorAll(".chat-row").forEach(function (row) {
      var open = row.getAttribute("data-chat-id") === id;
      row.classList.toggle("is-open", open);
      var link = row.querySelector(".chat-link");
      if (link) { if (open) link.setAttribute("aria-current", "true"); else link.removeAttribute("aria-current"); }
    });
  }

  /* ------------------------------------------------------------ websocket */

  var socket = null; // the ws extension's public wrapper (send, reconnect)
  var failures = 0; // consecutive attempts that never opened
  var everOpened = false;
  var gaveUp = false;
  var banner = document.getElementById("connection-banner");
  var bannerText = banner && banner.querySelector(".connection-text");
  var bannerButton = banner && banner.querySelector(".connection-retry");

  function showBanner(text, failed) {
    if (!banner) return;
    bannerText.textContent = text;
    banner.hidden = false;
    banner.classList.toggle("is-failed", !!failed);
    bannerButton.hidden = !failed;
  }
  function hideBanner() { if (banner) banner.hidden = true; }

  function send(payload) {
    if (socket) socket.send(JSON.stringify(payload));
  }

  function syncToken() {
    var el = document.getElementById("sync-token");
    return el ? el.getAttribute("data-token") : "";
  }

  function sendSync() {
    var filters = listFilters();
    send({ action: "sync", chat_id: openChatId() || null, view: filters.view, status: filters.status,
           q: filters.q, since: syncToken() });
  }

  // Exponential backoff with full jitter: a random wait up to base·2^n (capped), so a restarted server
  // is not hit by every browser at the same instant.
  htmx.config.wsReconnectDelay = function (retryCount) {
    var ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, retryCount));
    return Math.max(150, Math.random() * ceiling);
  };

  var createDefault = null;
  function createSocket(url) {
    var ws = new WebSocket(url, []);
    var opened = false;
    ws.addEventListener("open", function () { opened = true; });
    // Registered before the extension's own onclose, so it can stop the retry loop after MAX_TRIES.
    ws.addEventListener("close", function (evt) {
      if (evt.code >= 4000) {
        giveUp("You were signed out or lost access to this workspace. Reload the page.");
        return;
      }
      if (opened) { failures = 0; }
      else { failures += 1; }
      if (failures >= MAX_TRIES) {
        giveUp("Can't reach the server.");
      } else {
        showBanner("Reconnecting…" + (failures ? " (try " + (failures + 1) + " of " + MAX_TRIES + ")" : ""), false);
      }
    });
    return ws;
  }

  function giveUp(text) {
    gaveUp = true;
    // Removing the socket's element is how the ws extension is told to stop reconnecting.
    var holder = document.getElementById("realtime");
    if (holder) holder.remove();
    showBanner(text, true);
  }

  function reconnect() {
    failures = 0;
    gaveUp = false;
    showBanner("Reconnecting…", false);
    var holder = document.createElement("div");
    holder.id = "realtime";
    holder.hidden = true;
    holder.setAttribute("hx-ext", "ws");
    holder.setAttribute("ws-connect", "/ws/inbox/");
    inbox.insertBefore(holder, inbox.firstChild);
    htmx.process(holder);
  }

  if (bannerButton) bannerButton.addEventListener("click", reconnect);
  htmx.createWebSocket = createSocket;

  document.body.addEventListener("htmx:wsOpen", function (evt) {
    socket = evt.detail.socketWrapper;
    failures = 0;
    everOpened = true;
    hideBanner();
    sendSync(); // joins the open chat's group and fetches whatever happened since the page's token
    inbox.setAttribute("data-connected", "true");
  });
  document.body.addEventListener("htmx:wsClose", function () {
    inbox.setAttribute("data-connected", "false");
  });
  document.body.addEventListener("htmx:wsAfterMessage", function (evt) {
    // A new inbound message in the chat being looked at is read at once.
    if (document.visibilityState === "visible" && /data-direction="in"/.test(evt.detail.message || "") &&
        /beforeend:#message-list/.test(evt.detail.message || "")) {
      scheduleMarkRead();
    }
  });

  var markReadTimer = null;
  function scheduleMarkRead() {
    var id = openChatId();
    if (!id) return;
    clearTimeout(markReadTimer);
    markReadTimer = setTimeout(function () {
      htmx.ajax("POST", "/inbox/chats/" + id + "/read/", { swap: "none" });
    }, 400);
  }

  /* ------------------------------------------------------------ navigation between panes */

  document.body.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    if (target && target.id === "conversation-pane") {
      inbox.setAttribute("data-pane", "conversation");
      markOpenRow();
      setupConversation();
      send({ action: "open_chat", chat_id: openChatId() });
    }
    if (target && (target.id === "list-pane" || target.id === "chat-list-region")) {
      markOpenRow();
      var f = listFilters();
      send({ action: "filters", view: f.view, status: f.status, q: f.q });
    }
  });

  inbox.addEventListener("click", function (evt) {
    var back = evt.target.closest(".back-link");
    if (back && window.matchMedia("(max-width: 760px)").matches && openChatId()) {
      evt.preventDefault();
      inbox.setAttribute("data-pane", "list");
      history.pushState({}, "", back.getAttribute("href"));
      return;
    }
    if (evt.target.closest(".sidebar-open")) { inbox.classList.add("sidebar-open"); return; }
    if (inbox.classList.contains("sidebar-open") && !evt.target.closest("#sidebar")) inbox.classList.remove("sidebar-open");
  });
  window.addEventListener("popstate", function () {
    if (!/\/inbox\/chats\/\d+\//.test(location.pathname)) inbox.setAttribute("data-pane", "list");
  });

  /* ------------------------------------------------------------ composer */

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (crypto.getRandomValues(new Uint8Array(1))[0] & 15);
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }

  function autosize(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight + 2, 180) + "px";
  }

  function setupConversation() {
    var scroller = document.getElementById("message-scroll");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    var form = document.getElementById("composer-form");
    if (!form) return;
    var textarea = form.querySelector('textarea[name="text"]');
    var key = textarea.getAttribute("data-draft-key");
    try { textarea.value = localStorage.getItem(key) || ""; } catch (e) { /* storage disabled */ }
    form.querySelector('input[name="client_message_id"]').value = uuid();
    autosize(textarea);
    if (window.matchMedia("(min-width: 761px)").matches) textarea.focus();
  }

  document.body.addEventListener("input", function (evt) {
    var textarea = evt.target.closest && evt.target.closest("#composer-form textarea");
    if (!textarea) return;
    autosize(textarea);
    try { localStorage.setItem(textarea.getAttribute("data-draft-key"), textarea.value); } catch (e) { /* full */ }
  });

  document.body.addEventListener("keydown", function (evt) {
    var textarea = evt.target.closest && evt.target.closest("#composer-form textarea");
    if (!textarea || evt.key !== "Enter" || evt.shiftKey || evt.isComposing) return;
    evt.preventDefault();
    textarea.form.requestSubmit();
  });

  document.body.addEventListener("change", function (evt) {
    var file = evt.target.closest && evt.target.closest("#composer-form .file-input");
    if (file) {
      var chip = document.querySelector("#composer-form .attachment-chip");
      chip.hidden = !file.files.length;
      chip.querySelector(".attachment-chip-name").textContent = file.files.length ? file.files[0].name : "";
      return;
    }
    var auto = evt.target.closest && evt.target.closest("[data-autosubmit]");
    if (auto) auto.form.requestSubmit();
  });

  document.body.addEventListener("click", function (evt) {
    if (evt.target.closest(".attachment-clear")) {
      var form = document.getElementById("composer-form");
      form.querySelector(".file-input").value = "";
      form.querySelector(".attachment-chip").hidden = true;
    }
  });

  function optimisticBubble(form, text, fileName, cmid) {
    var list = document.getElementById("message-list");
    if (!list) return;
    var li = document.createElement("li");
    li.className = "bubble-row out";
    li.setAttribute("data-optimistic", "");
    li.setAttribute("data-status", "pending");
    li.setAttribute("data-client-message-id", cmid);
    li.setAttribute("data-sort", "~" + Date.now());
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    if (fileName) {
      var att = document.createElement("span");
      att.className = "attachment";
      att.textContent = "📎 " + fileName;
      bubble.appendChild(att);
    }
    if (text) {
      var p = document.createElement("p");
      p.className = "bubble-text";
      p.textContent = text; // textContent: the agent's text is never parsed as HTML
      bubble.appendChild(p);
    }
    var meta = document.createElement("span");
    meta.className = "bubble-meta";
    var time = document.createElement("time");
    var now = new Date();
    time.textContent = ("0" + now.getHours()).slice(-2) + ":" + ("0" + now.getMinutes()).slice(-2);
    meta.appendChild(time);
    var tick = document.createElement("span");
    tick.className = "tick tick-pending";
    tick.title = "Sending";
    tick.innerHTML = '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><circle cx="8" cy="8" r="6" fill="none" stroke="currentColor" stroke-width="1.5"/><path d="M8 4.5V8l2.5 1.5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round"/></svg><span class="sr-only">Sending</span>';
    meta.appendChild(tick);
    bubble.appendChild(meta);
    li.appendChild(bubble);
    var empty = list.querySelector(".message-empty");
    if (empty) empty.remove();
    list.appendChild(li);
    var scroller = document.getElementById("message-scroll");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  function markOptimisticFailed(cmid, reason) {
    var li = document.querySelector('[data-optimistic][data-client-message-id="' + CSS.escape(cmid) + '"]');
    if (!li) return;
    li.setAttribute("data-status", "failed");
    var tick = li.querySelector(".tick");
    if (tick) { tick.className = "tick tick-failed"; tick.textContent = "!"; }
    var note = document.createElement("div");
    note.className = "failed-note";
    note.setAttribute("role", "alert");
    note.textContent = "Not sent" + (reason ? ": " + reason : "");
    li.appendChild(note);
  }

  document.body.addEventListener("htmx:beforeRequest", function (evt) {
    var form = evt.detail.elt;
    if (!form || form.id !== "composer-form") return;
    var textarea = form.querySelector('textarea[name="text"]');
    var file = form.querySelector(".file-input");
    var text = textarea.value.trim();
    var fileName = file && file.files.length ? file.files[0].name : "";
    if (!text && !fileName) { evt.preventDefault(); return; }
    var cmid = form.querySelector('input[name="client_message_id"]').value;
    form.setAttribute("data-pending-cmid", cmid);
    optimisticBubble(form, text, fileName, cmid);
    // The request already holds its values: clear the box for the next message, with a fresh id so a
    // double submit of *this* message reuses its id and stays one message.
    textarea.value = "";
    autosize(textarea);
    try { localStorage.removeItem(textarea.getAttribute("data-draft-key")); } catch (e) { /* ignore */ }
    form.querySelector('input[name="client_message_id"]').value = uuid();
    if (file) { file.value = ""; form.querySelector(".attachment-chip").hidden = true; }
    var error = document.getElementById("composer-error");
    if (error) error.textContent = "";
  });

  document.body.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (!form || form.id !== "composer-form") return;
    var cmid = form.getAttribute("data-pending-cmid");
    if (!evt.detail.successful && cmid) markOptimisticFailed(cmid, "the server could not be reached. Try again.");
  });

  document.body.addEventListener("inbox:send-failed", function (evt) {
    markOptimisticFailed(evt.detail.client_message_id, evt.detail.error);
  });

  document.body.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form && form.hasAttribute && form.hasAttribute("data-reset-on-success") && evt.detail.successful) {
      var details = form.closest("details");
      if (details) details.open = false;
    }
  });

  /* ------------------------------------------------------------ layout: sidebar and list width */

  function loadLayout() {
    try { return JSON.parse(localStorage.getItem(LAYOUT_KEY)) || {}; } catch (e) { return {}; }
  }
  function saveLayout(patch) {
    var layout = loadLayout();
    Object.keys(patch).forEach(function (k) { layout[k] = patch[k]; });
    try { localStorage.setItem(LAYOUT_KEY, JSON.stringify(layout)); } catch (e) { /* ignore */ }
  }
  function applyLayout() {
    var layout = loadLayout();
    inbox.classList.toggle("sidebar-collapsed", !!layout.sidebarCollapsed);
    var toggle = document.querySelector(".sidebar-toggle");
    if (toggle) {
      toggle.setAttribute("aria-expanded", layout.sidebarCollapsed ? "false" : "true");
      toggle.setAttribute("aria-label", layout.sidebarCollapsed ? "Expand sidebar" : "Collapse sidebar");
    }
    if (layout.listWidth) setListWidth(layout.listWidth);
  }
  function setListWidth(px) {
    px = Math.max(260, Math.min(560, Math.round(px)));
    inbox.style.setProperty("--list-width", px + "px");
    var resizer = document.querySelector(".pane-resizer");
    if (resizer) resizer.setAttribute("aria-valuenow", String(px));
    return px;
  }

  document.body.addEventListener("click", function (evt) {
    if (!evt.target.closest(".sidebar-toggle")) return;
    saveLayout({ sidebarCollapsed: !inbox.classList.contains("sidebar-collapsed") });
    applyLayout();
  });

  var resizer = document.querySelector(".pane-resizer");
  if (resizer) {
    resizer.addEventListener("pointerdown", function (evt) {
      var list = document.getElementById("list-pane");
      var left = list.getBoundingClientRect().left;
      resizer.classList.add("is-dragging");
      resizer.setPointerCapture(evt.pointerId);
      function move(e) { setListWidth(e.clientX - left); }
      function up() {
        resizer.classList.remove("is-dragging");
        resizer.removeEventListener("pointermove", move);
        resizer.removeEventListener("pointerup", up);
        saveLayout({ listWidth: list.getBoundingClientRect().width });
      }
      resizer.addEventListener("pointermove", move);
      resizer.addEventListener("pointerup", up);
    });
    resizer.addEventListener("keydown", function (evt) {
      if (evt.key !== "ArrowLeft" && evt.key !== "ArrowRight") return;
      evt.preventDefault();
      var current = document.getElementById("list-pane").getBoundingClientRect().width;
      saveLayout({ listWidth: setListWidth(current + (evt.key === "ArrowRight" ? 20 : -20)) });
    });
  }

  applyLayout();
  markOpenRow();
  setupConversation();
})();
