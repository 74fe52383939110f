// The playground (GET /): a chat where each message makes or edits a video.
//
// It uses the public API only, as any client would: /v1/models, /v1/chat/completions (stream: true,
// read with fetch + ReadableStream), and /source/<task id> to re-attach to a task after a reload.
// Nothing from the stream or the user ever becomes HTML: the DOM is built with textContent and
// attributes, and only http(s) URLs found at fixed places of the reply become src/href.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const STORE = {key: "reelchat.apiKey", locale: "reelchat.locale", convs: "reelchat.conversations",
    current: "reelchat.current", prefs: "reelchat.prefs"};
  const RUNNING = ["sending", "queued", "in_progress"];

  const WORDS = {
    en: {chats: "Chats", apiKey: "API key", newChat: "New chat", versions: "Versions", model: "Model",
      orientation: "Orientation", duration: "Duration", attach: "Image", send: "Send", save: "Save",
      keyTitle: "API key", portrait: "Portrait", landscape: "Landscape", seconds: "s",
      welcomeTitle: "Describe a video", welcomeBody: "Each message makes a video; the next message edits the latest one. Attach an image to animate it.",
      placeholder: "A red fox running through snow… (Enter ↵ sends)",
      sending: "Sending", queued: "Queued", in_progress: "Generating", completed: "Done", failed: "Failed", cancelled: "Deleted",
      editFromHere: "Edit from here", openMp4: "mp4", taskPage: "task page", rawReply: "reply as sent",
      needKey: "This server needs an API key. It is kept in this browser only (localStorage).",
      badKey: "That API key was not accepted. Check it and try again.", serverSaid: "Server: ",
      network: "Could not reach the server.", streamCut: "The reply stopped early; following the task instead.",
      lostBeforeStart: "The page was closed before the server answered.", untitled: "New chat",
      branchedFrom: "Branched from", branchNote: "Your next message edits video #",
      removeImage: "Remove", imageOnly: "(image)", close: "Close", prompt: "Prompt", video: "Video #",
      storageFull: "Browser storage is full: attached images of older messages were dropped.",
      deleteChat: "Delete conversation", branches: "branch"},
    zh: {chats: "会话", apiKey: "API 密钥", newChat: "新会话", versions: "版本", model: "模型",
      orientation: "方向", duration: "时长", attach: "图片", send: "发送", save: "保存",
      keyTitle: "API 密钥", portrait: "竖屏", landscape: "横屏", seconds: "秒",
      welcomeTitle: "描述一个视频", welcomeBody: "每条消息生成一个视频；下一条消息修改最新的视频。附上图片可让图片动起来。",
      placeholder: "一只红狐狸在雪地里奔跑……（Enter ↵ 发送）",
      sending: "发送中", queued: "排队中", in_progress: "生成中", completed: "生成完成", failed: "生成失败", cancelled: "已删除",
      editFromHere: "从这里修改", openMp4: "mp4", taskPage: "任务页面", rawReply: "原始回复",
      needKey: "此服务器需要 API 密钥。密钥只保存在本浏览器（localStorage）。",
      badKey: "API 密钥无效，请检查后重试。", serverSaid: "服务器：",
      network: "无法连接服务器。", streamCut: "回复提前中断，改为跟踪任务。",
      lostBeforeStart: "服务器应答前页面已关闭。", untitled: "新会话",
      branchedFrom: "分支自", branchNote: "下一条消息将修改视频 #",
      removeImage: "移除", imageOnly: "（图片）", close: "关闭", prompt: "提示词", video: "视频 #",
      storageFull: "浏览器存储已满：已丢弃较早消息中的图片。",
      deleteChat: "删除会话", branches: "分支"},
  };
  // what the chat format says when a task ends, to write a resumed reply the way the stream would have
  const DONE_WORDS = {
    en: {complete: "Generating Complete ✅", play: "Online Play▶️", failed: "Generating Failed ❌", reason: "Reason"},
    zh: {complete: "生成完成 ✅", play: "在线播放▶️", failed: "生成失败 ❌", reason: "原因"},
  };

  let locale = localStorage.getItem(STORE.locale) || (navigator.language.startsWith("zh") ? "zh" : "en");
  const t = (k) => WORDS[locale][k] ?? WORDS.en[k];
  let convs = readJson(STORE.convs, []);
  let current = convs.find((c) => c.id === localStorage.getItem(STORE.current)) || null;
  let prefs = readJson(STORE.prefs, {});
  let models = [];
  let attachment = null; // {url: data URL, name}
  let shownMid = null; // the video the viewer shows
  const following = new Set(); // message ids whose task is being followed (stream or polling)

  function readJson(name, fallback) {
    try { return JSON.parse(localStorage.getItem(name)) ?? fallback; } catch { return fallback; }
  }
  const uid = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);

  // one element, its attributes and children (strings become text nodes)
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }
  function safeUrl(u) {
    try {
      const url = new URL(u, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch { return null; }
  }

  // ------------------------------------------------------------------ storage
  let saveTimer = null;
  function save(now = true) {
    if (!now) { if (!saveTimer) saveTimer = setTimeout(() => { saveTimer = null; save(); }, 400); return; }
    localStorage.setItem(STORE.current, current ? current.id : "");
    localStorage.setItem(STORE.prefs, JSON.stringify(prefs));
    try {
      localStorage.setItem(STORE.convs, JSON.stringify(convs));
    } catch {
      // full: keep the text of every conversation, drop images except the newest message's
      const keep = current && current.messages.findLast((m) => m.image);
      for (const c of convs) for (const m of c.messages) if (m.image && m !== keep) { m.image = null; m.imageDropped = true; }
      try { localStorage.setItem(STORE.convs, JSON.stringify(convs)); notice(t("storageFull")); } catch { notice(t("storageFull")); }
    }
  }

  // ------------------------------------------------------------------ API
  function headers(extra = {}) {
    const h = {"Accept-Language": locale, ...extra};
    const key = localStorage.getItem(STORE.key);
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }
  async function errorText(r) {
    try { const body = await r.json(); return body.error?.message || r.statusText; } catch { return `${r.status} ${r.statusText}`; }
  }
  function notice(text) {
    const n = $("notice");
    n.textContent = text || "";
    n.hidden = !text;
  }

  async function loadModels() {
    let r;
    try { r = await fetch("/v1/models", {headers: headers(), cache: "no-store"}); } catch { notice(t("network")); return; }
    if (r.status === 401) { askKey(await errorText(r)); return; }
    if (!r.ok) { notice(await errorText(r)); return; }
    notice("");
    models = (await r.json()).data;
    const dialog = $("key-dialog");
    if (dialog.open) dialog.close();
    $("key-button").hidden = !localStorage.getItem(STORE.key);
    fillPickers();
  }

  function askKey(serverMessage) {
    const had = !!localStorage.getItem(STORE.key) && serverMessage !== null;
    const msg = $("key-message");
    msg.textContent = had ? `${t("badKey")}\n${t("serverSaid")}${serverMessage}` : t("needKey");
    msg.className = had ? "bad" : "";
    $("key-button").hidden = false;
    const dialog = $("key-dialog");
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  }

  // ------------------------------------------------------------------ composer
  function fillPickers() {
    const model = $("model");
    model.replaceChildren(...models.map((m) => el("option", {value: m.id, text: m.id})));
    if (models.some((m) => m.id === prefs.model)) model.value = prefs.model;
    const orient = $("orientation");
    orient.replaceChildren(el("option", {value: "portrait", text: t("portrait")}), el("option", {value: "landscape", text: t("landscape")}));
    orient.value = prefs.orientation || "portrait";
    fillSeconds();
  }
  function fillSeconds() {
    const spec = models.find((m) => m.id === $("model").value);
    const secs = $("seconds");
    const options = spec ? spec.seconds : [];
    secs.replaceChildren(...options.map((s) => el("option", {value: s, text: s + " " + t("seconds")})));
    // the model's default (the seed's: sora-2 10 s, sora-2-pro 15 s), else the longest
    const fallback = spec && options.includes(spec.default_seconds) ? spec.default_seconds : Math.max(...options);
    if (options.length) secs.value = String(options.includes(prefs.seconds) ? prefs.seconds : fallback);
  }
  function setAttachment(file) {
    if (!file || !file.type.startsWith("image/")) return;
    const reader = new FileReader();
    reader.onload = () => { attachment = {url: reader.result, name: file.name || "image"}; renderAttachment(); };
    reader.readAsDataURL(file);
  }
  function renderAttachment() {
    const box = $("attachment");
    box.hidden = !attachment;
    box.replaceChildren();
    if (!attachment) return;
    box.append(el("img", {src: attachment.url, alt: attachment.name}), el("span", {text: attachment.name}),
      el("button", {type: "button", class: "ghost", text: t("removeImage"), onclick: () => { attachment = null; renderAttachment(); }}));
  }

  // ------------------------------------------------------------------ conversations
  function newConversation() {
    current = null;
    shownMid = null;
    save();
    render();
    $("prompt").focus();
  }
  function open(conv) {
    current = conv;
    shownMid = null;
    save();
    render();
  }
  function branchFrom(conv, mid) {
    const i = conv.messages.findIndex((m) => m.id === mid);
    const copy = {id: uid(), created: Date.now(), title: conv.title, branchOf: {conv: conv.id, mid},
      messages: JSON.parse(JSON.stringify(conv.messages.slice(0, i + 1)))};
    convs.unshift(copy);
    open(copy);
    $("prompt").focus();
  }

  // what the API gets: the conversation as it is, the image only on the latest user message
  function wireMessages(conv) {
    const msgs = conv.messages.filter((m) => m.role === "user" || m.content);
    const last = msgs.findLastIndex((m) => m.role === "user");
    return msgs.map((m, i) => {
      if (m.role === "assistant") return {role: "assistant", content: m.content};
      if (i === last && m.image) return {role: "user", content: [{type: "text", text: m.wire}, {type: "image_url", image_url: {url: m.image}}]};
      return {role: "user", content: m.wire};
    });
  }

  async function send() {
    const text = $("prompt").value.trim();
    if ((!text && !attachment) || busy(current) || !models.length) return;
    if (!current) {
      current = {id: uid(), created: Date.now(), title: "", messages: []};
      convs.unshift(current);
    }
    const opts = {orientation: $("orientation").value, seconds: Number($("seconds").value)};
    prefs = {model: $("model").value, ...opts};
    const wire = `${text}\n\n\`\`\`json\n${JSON.stringify(opts)}\n\`\`\``;
    current.messages.push({id: uid(), role: "user", text, wire, image: attachment && attachment.url, model: prefs.model, ...opts});
    const reply = {id: uid(), role: "assistant", content: "", status: "sending", progress: 0, locale, model: prefs.model};
    current.messages.push(reply);
    if (!current.title) current.title = text.slice(0, 60) || t("imageOnly");
    $("prompt").value = "";
    attachment = null;
    renderAttachment();
    save();
    render();
    await streamReply(current, reply, {model: prefs.model, stream: true, messages: wireMessages(current)});
  }

  // ------------------------------------------------------------------ the reply stream
  async function streamReply(conv, reply, body) {
    following.add(reply.id);
    let r;
    try {
      r = await fetch("/v1/chat/completions", {method: "POST", headers: headers({"Content-Type": "application/json"}), body: JSON.stringify(body)});
    } catch {
      return finish(conv, reply, "failed", t("network"));
    }
    if (!r.ok) {
      const message = await errorText(r);
      if (r.status === 401) askKey(message);
      return finish(conv, reply, "failed", message);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true}).replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue; // comments are keep-alives
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const delta = JSON.parse(data).choices?.[0]?.delta?.content;
            if (delta) reply.content += delta;
          }
        }
        const before = reply.taskId + reply.status;
        readReply(reply);
        save(reply.taskId + reply.status !== before); // the task id at once: a reload needs it to re-attach
        update(conv, reply);
      }
    } catch { /* the connection dropped: the task goes on, follow it below */ }
    if (RUNNING.includes(reply.status)) {
      if (!reply.taskId) return finish(conv, reply, "failed", t("network"));
      notice(t("streamCut"));
      return poll(conv, reply);
    }
    following.delete(reply.id);
    save();
    render();
  }
  function finish(conv, reply, status, error) {
    reply.status = status;
    reply.error = error;
    following.delete(reply.id);
    save();
    if (conv === current) render();
  }

  // Read the reply the way any client does: the lines after "> ID:" (the JSON echo before them is
  // the user's words, so nothing in it counts; JSON keeps it on lines that start with a space or brace).
  function readReply(reply) {
    const c = reply.content;
    const id = /^> ID: `(task_[0-9a-z]{26})`$/m.exec(c);
    if (!id) return;
    reply.taskId = id[1];
    const after = c.slice(id.index);
    const lines = after.split("\n");
    const runner = lines.find((l) => l.startsWith(">🏃"));
    const numbers = runner ? [...runner.matchAll(/(\d+)\.\./g)].map((m) => Number(m[1])) : [];
    if (numbers.length) reply.progress = numbers[numbers.length - 1];
    const states = lines.filter((l) => l.startsWith("> ") && !l.startsWith("> ID:") && !l.startsWith("> sid:"));
    const sid = /^> sid: (s_[0-9a-f]{32})$/m.exec(after);
    const failedAt = states.findIndex((l) => l.includes("❌"));
    if (sid) {
      reply.status = "completed";
      reply.progress = 100;
      reply.sid = sid[1];
      const thumb = /^!\[[^\]\n]*\]\((\S+?)\)$/m.exec(after);
      const mp4 = /^\[[^\]\n]*\]\((\S+?\.mp4)\)$/m.exec(after);
      reply.thumb = thumb ? safeUrl(thumb[1]) : null;
      reply.mp4 = mp4 ? safeUrl(mp4[1]) : null;
    } else if (failedAt >= 0) {
      reply.status = "failed";
      reply.error = (states[failedAt + 1] || "").replace(/^> /, "");
    } else {
      reply.status = numbers.length || states.length > 1 ? "in_progress" : "queued";
    }
  }

  // after a reload (or a dropped stream): the task's state from /source, until it ends
  async function poll(conv, reply) {
    following.add(reply.id);
    for (;;) {
      let data = null;
      try {
        const r = await fetch("/source/" + encodeURIComponent(reply.taskId), {cache: "no-store"});
        if (r.status === 404) return finish(conv, reply, "failed", await errorText(r));
        if (r.ok) data = await r.json();
      } catch { /* offline for a moment: try again */ }
      if (data) {
        reply.progress = data.progress;
        const words = DONE_WORDS[reply.locale || locale];
        if (data.status === "completed" && data.sid) {
          Object.assign(reply, {status: "completed", sid: data.sid, thumb: safeUrl(data.thumbnail_url), mp4: safeUrl(data.url), progress: 100});
          // the reply as the stream would have ended it, so the next turn finds the sid in the history
          reply.content += `\n\n> ${words.complete}\n> sid: ${data.sid}\n\n![${data.thumbnail_url}](${data.thumbnail_url})\n[${words.play}](${data.url})`;
        } else if (data.status === "failed" || data.status === "cancelled") {
          const message = data.error ? data.error.message : data.status;
          reply.content += `\n\n> ${words.failed}\n> ${words.reason}: ${message}`;
          return finish(conv, reply, data.status, message);
        } else {
          reply.status = data.status;
        }
        if (reply.status === "completed") { following.delete(reply.id); save(); if (conv === current) render(); return; }
        save(false);
        update(conv, reply);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function resumeAll() {
    for (const conv of convs) {
      for (const m of conv.messages) {
        if (m.role !== "assistant" || !RUNNING.includes(m.status) || following.has(m.id)) continue;
        if (m.taskId) poll(conv, m);
        else { m.status = "failed"; m.error = t("lostBeforeStart"); }
      }
    }
  }

  // ------------------------------------------------------------------ rendering
  const busy = (conv) => !!conv && conv.messages.some((m) => m.role === "assistant" && RUNNING.includes(m.status));
  const videos = (conv) => conv.messages.filter((m) => m.role === "assistant" && (m.taskId || m.sid));
  const promptOf = (conv, reply) => {
    const i = conv.messages.indexOf(reply);
    const u = conv.messages[i - 1];
    return u && u.role === "user" ? u.text || t("imageOnly") : "";
  };

  function renderUser(m) {
    const chips = [m.model, m.seconds ? m.seconds + " " + t("seconds") : null, m.orientation ? t(m.orientation) : null].filter(Boolean).join(" · ");
    return el("article", {class: "msg user", "data-mid": m.id},
      el("p", {class: "text", text: m.text || t("imageOnly")}),
      m.image ? el("img", {src: m.image, alt: ""}) : null,
      el("div", {class: "chips", text: chips}));
  }

  function player(reply, id) {
    return el("video", {class: "player", id, controls: true, playsinline: true, loop: true, preload: "auto", src: reply.mp4, poster: reply.thumb});
  }

  function renderReply(conv, m) {
    const n = videos(conv).indexOf(m) + 1;
    const status = el("div", {class: "status-line"},
      el("span", {class: "status-label " + m.status, text: (n ? t("video") + n + " · " : "") + t(m.status)}),
      RUNNING.includes(m.status) || m.status === "completed" ? el("span", {class: "percent", text: `${m.progress || 0}%`}) : null,
      m.taskId ? el("span", {class: "task-id", text: m.taskId}) : null);
    const parts = [status];
    if (m.status !== "failed" && m.status !== "cancelled" && m.status !== "completed") {
      parts.push(el("progress", {max: 100, value: m.progress || 0, "aria-label": t(m.status)}));
    }
    if (m.error) parts.push(el("p", {class: "error", text: m.error}));
    if (m.status === "completed" && m.mp4) {
      parts.push(player(m, null));
      const web = m.taskId ? safeUrl("/web/" + m.taskId) : null;
      parts.push(el("div", {class: "actions"},
        el("button", {type: "button", class: "edit-from-here", text: t("editFromHere"), onclick: () => branchFrom(conv, m.id)}),
        el("a", {href: m.mp4, target: "_blank", rel: "noopener", text: t("openMp4")}),
        web ? el("a", {href: web, target: "_blank", rel: "noopener", text: t("taskPage")}) : null,
        el("span", {class: "sid", text: m.sid})));
    }
    if (m.content) parts.push(el("details", {}, el("summary", {text: t("rawReply")}), el("pre", {text: m.content})));
    return el("article", {class: "msg assistant" + (m.id === shownMid ? " shown" : ""), "data-mid": m.id}, ...parts);
  }

  // a reply changed while streaming: redraw it (and the rail), keep the rest of the page
  function update(conv, reply) {
    if (conv !== current) return;
    const old = document.querySelector(`#log [data-mid="${reply.id}"]`);
    if (old) old.replaceWith(renderReply(conv, reply));
    renderRail();
    $("send").disabled = busy(current);
  }

  function renderRail() {
    const list = current ? videos(current) : [];
    $("rail-section").hidden = !list.length && !(current && current.branchOf);
    const items = [];
    const parent = current && current.branchOf && convs.find((c) => c.id === current.branchOf.conv);
    if (parent) {
      items.push(el("li", {}, el("button", {type: "button", class: "rail-branch", text: `↰ ${t("branchedFrom")}: ${parent.title}`, onclick: () => open(parent)})));
    }
    list.forEach((m, i) => {
      const thumb = m.thumb ? el("img", {src: m.thumb, alt: ""}) : el("span", {class: "rail-placeholder"});
      const cap = `${i + 1}. ${promptOf(current, m)}`;
      const item = el("button", {type: "button", class: "rail-item" + (m.status === "completed" ? "" : " pending") + (m.id === shownMid ? " shown" : ""),
        title: cap, "data-mid": m.id, onclick: () => show(m)}, thumb, el("span", {class: "cap", text: cap}));
      const branches = convs.filter((c) => c !== current && c.branchOf && c.branchOf.conv === current.id && c.branchOf.mid === m.id);
      items.push(el("li", {}, item, ...branches.map((b) => el("button", {type: "button", class: "rail-branch", text: `⑂ ${t("branches")}: ${b.title}`, onclick: () => open(b)}))));
    });
    $("rail").replaceChildren(...items);
  }

  function show(m) {
    shownMid = m.id;
    const viewer = $("viewer");
    const n = videos(current).indexOf(m) + 1;
    viewer.hidden = false;
    viewer.replaceChildren(
      el("div", {class: "viewer-head"}, el("h2", {text: t("video") + n}),
        el("button", {type: "button", class: "ghost", text: t("close"), onclick: () => { shownMid = null; viewer.hidden = true; render(); }})),
      m.mp4 ? player(m, "viewer-video") : el("p", {text: t(m.status) + ` ${m.progress || 0}%`}),
      el("p", {class: "viewer-prompt", text: promptOf(current, m)}),
      m.status === "completed" ? el("button", {type: "button", class: "edit-from-here", text: t("editFromHere"), onclick: () => branchFrom(current, m.id)}) : null);
    renderRail();
    for (const a of document.querySelectorAll("#log .msg.assistant")) a.classList.toggle("shown", a.dataset.mid === m.id);
    viewer.scrollIntoView({block: "nearest"});
  }

  function renderConversations() {
    $("conversations").replaceChildren(...convs.map((c) => el("li", {},
      el("button", {type: "button", class: "conv" + (c === current ? " current" : ""), "aria-current": c === current ? "true" : null, onclick: () => { open(c); toggleSidebar(false); }},
        el("span", {text: (c.branchOf ? "⑂ " : "") + (c.title || t("untitled"))}),
        el("small", {text: new Date(c.created).toLocaleString(locale)})),
      el("button", {type: "button", class: "conv-delete", "aria-label": t("deleteChat"), title: t("deleteChat"), text: "×", onclick: () => remove(c)}))));
  }
  function remove(conv) {
    convs = convs.filter((c) => c !== conv);
    if (current === conv) current = null;
    save();
    render();
  }

  function render() {
    const log = $("log");
    log.replaceChildren(...(current ? current.messages.map((m) => (m.role === "user" ? renderUser(m) : renderReply(current, m))) : []));
    $("empty").hidden = !!(current && current.messages.length);
    const shown = current && current.messages.find((m) => m.id === shownMid);
    if (!shown) { shownMid = null; $("viewer").hidden = true; $("viewer").replaceChildren(); }
    renderRail();
    renderConversations();
    const latest = current ? videos(current).filter((m) => m.sid) : [];
    const note = $("branch-note");
    note.hidden = !(current && current.branchOf && latest.length);
    note.textContent = note.hidden ? "" : t("branchNote") + latest.length;
    $("send").disabled = busy(current);
    const last = log.lastElementChild;
    if (last) last.scrollIntoView({block: "end"});
  }

  function applyLocale() {
    document.documentElement.lang = locale === "zh" ? "zh-CN" : "en";
    for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
    $("locale-toggle").textContent = locale === "zh" ? "English (en)" : "中文 (zh)";
    $("prompt").placeholder = t("placeholder");
    $("prompt").setAttribute("aria-label", t("prompt"));
    for (const id of ["model", "orientation", "seconds"]) $(id).setAttribute("aria-label", t(id === "seconds" ? "duration" : id));
    if (models.length) { const keep = [$("orientation").value, $("seconds").value]; fillPickers(); [$("orientation").value, $("seconds").value] = keep; }
    render();
  }
  function toggleSidebar(open) {
    $("sidebar").classList.toggle("open", open);
    $("chats-toggle").setAttribute("aria-expanded", String(open));
  }

  // ------------------------------------------------------------------ wiring
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("prompt").addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); setAttachment(file); }
  });
  const composer = $("composer");
  composer.addEventListener("dragover", (e) => { e.preventDefault(); composer.classList.add("dragging"); });
  composer.addEventListener("dragleave", () => composer.classList.remove("dragging"));
  composer.addEventListener("drop", (e) => {
    e.preventDefault();
    composer.classList.remove("dragging");
    setAttachment([...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/")));
  });
  $("file").addEventListener("change", (e) => { setAttachment(e.target.files[0]); e.target.value = ""; });
  $("model").addEventListener("change", fillSeconds);
  $("new-chat").addEventListener("click", () => { newConversation(); toggleSidebar(false); });
  $("chats-toggle").addEventListener("click", () => toggleSidebar(!$("sidebar").classList.contains("open")));
  $("locale-toggle").addEventListener("click", () => {
    locale = locale === "zh" ? "en" : "zh";
    localStorage.setItem(STORE.locale, locale);
    applyLocale();
  });
  $("key-button").addEventListener("click", () => askKey(null));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (key) localStorage.setItem(STORE.key, key); else localStorage.removeItem(STORE.key);
    $("key-input").value = "";
    loadModels();
  });
  window.addEventListener("pagehide", () => { if (saveTimer) { clearTimeout(saveTimer); saveTimer = null; save(); } });
  window.addEventListener("keydown", (e) => { if (e.key === "Escape") toggleSidebar(false); });

  resumeAll();
  applyLocale();
  loadModels();
})();
