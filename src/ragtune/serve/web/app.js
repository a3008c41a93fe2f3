// ragtune's chat page: models, streamed answers with citations, feedback, documents (helpers in common.js). Text from
// documents and models is only ever set as textContent; the one innerHTML is Markdown rendered by the server with
// raw HTML off.
"use strict";

const state = { conversations: load(), current: null, models: [] };

function load() {
  try { return JSON.parse(localStorage.getItem("ragtune-conversations")) || []; } catch { return []; }
}
function save() { localStorage.setItem("ragtune-conversations", JSON.stringify(state.conversations)); }

async function loadModels() {
  const models = (await apiJson("/v1/models")).data;
  state.models = models.filter((m) => m.id !== "ragtune");
  const alias = models.find((m) => m.id === "ragtune");
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => {
    const quality = m.quality ? ` · ${m.quality.metric} ${m.quality.value.toFixed(2)} [${m.quality.ci_low.toFixed(2)}, ${m.quality.ci_high.toFixed(2)}]` : "";
    const mark = alias && alias.alias_of === m.id ? (alias.recommended ? " ★ recommended" : " (default)") : "";
    return el("option", { value: m.id, text: `${m.id}${quality}${mark}`, title: m.description });
  }));
  select.value = (alias && alias.alias_of) || "rag";
}

function conversation() {
  if (!state.current) {
    state.current = { id: crypto.randomUUID(), title: "New chat", messages: [] };
    state.conversations.unshift(state.current);
  }
  return state.current;
}

function renderConversations() {
  $("conversations").replaceChildren(...state.conversations.map((c) => el("li", {
    text: c.title, class: c === state.current ? "current" : "",
    onclick: () => { state.current = c; renderAll(); $("side").classList.remove("open"); },
  })));
}

function renderAll() {
  renderConversations();
  const box = $("messages");
  box.replaceChildren();
  for (const message of (state.current || { messages: [] }).messages) box.append(messageNode(message));
  box.scrollTop = box.scrollHeight;
}

function messageNode(message) {
  const text = el("div", { class: "text" });
  const node = el("div", { class: `message ${message.role}` },
    el("div", { class: "who", text: message.role === "user" ? "You" : message.model || "assistant" }), text);
  if (message.html) text.innerHTML = message.html; else text.textContent = message.content;
  if (message.role === "assistant") decorate(node, message);
  return node;
}

function decorate(node, message) {
  if (message.citations && message.citations.length) {
    node.append(el("div", { class: "chips" }, ...message.citations.map((c) => el("button", {
      class: "chip", text: `[${c.number}] ${c.source}`, title: "Show the cited passage",
      onclick: () => showPassage(c),
    }))));
  }
  if (message.response_id) {
    const buttons = ["up", "down"].map((rating) => el("button", {
      text: rating === "up" ? "Helpful" : "Not helpful", "aria-label": `Thumbs ${rating}`, "data-rating": rating,
      class: message.feedback === rating ? "chosen" : "",
      onclick: async () => {
        await api("/v1/feedback", { method: "POST",
          body: JSON.stringify({ response_id: message.response_id, rating }) });
        message.feedback = rating;
        save();
        buttons.forEach((b) => b.classList.toggle("chosen", b.dataset.rating === rating));
      },
    }));
    node.append(el("div", { class: "actions" }, ...buttons));
  }
}

function showPassage(citation) {
  $("viewer-title").textContent = `[${citation.number}] ${citation.source}`;
  $("viewer-body").textContent = citation.text;
  const open = $("viewer-open");
  open.hidden = false;
  open.onclick = async () => {
    try {
      const doc = await apiJson(`/v1/documents/${citation.source.split("/").map(encodeURIComponent).join("/")}`);
      $("viewer-body").textContent = doc.documents.map((d) => d.text).join("\n\n");
    } catch (error) { $("viewer-body").textContent = `Could not open the document: ${error.message}`; }
    open.hidden = true;
  };
  $("viewer").showModal();
}

async function ask(question) {
  const chat = conversation();
  if (!chat.messages.length) chat.title = question.slice(0, 60);
  chat.messages.push({ role: "user", content: question });
  const model = $("model").value;
  const answer = { role: "assistant", content: "", model };
  renderAll();
  const node = messageNode(answer);
  $("messages").append(node);
  const text = node.querySelector(".text");
  const history = chat.messages.map(({ role, content }) => ({ role, content }));
  $("send").disabled = true;
  try {
    const response = await api("/v1/chat/completions", { method: "POST",
      body: JSON.stringify({ model, messages: history, stream: true }) });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        answer.content += chunk.choices[0].delta.content || "";
        if (chunk.citations) { answer.citations = chunk.citations; answer.response_id = chunk.id; }
        text.textContent = answer.content;
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    }
    answer.html = (await apiJson("/v1/render", { method: "POST",
      body: JSON.stringify({ markdown: answer.content }) })).html;
    chat.messages.push(answer);
  } catch (error) {
    chat.messages.pop();
    node.querySelector(".text").replaceChildren(el("span", { class: "error", text: `Error: ${error.message}` }));
    $("send").disabled = false;
    return;
  }
  save();
  renderAll();
  $("send").disabled = false;
}

async function loadDocuments() {
  const docs = (await apiJson("/v1/documents")).data;
  $("documents").replaceChildren(...docs.map((d) => el("li", {},
    el("span", { text: `${d.source} (${plural(d.chunks, "chunk")})`, title: d.root }),
    el("button", { text: "Delete", "aria-label": `Delete ${d.source}`, onclick: async () => {
      if (!confirm(`Delete ${d.source} from the knowledge base?`)) return;
      await api(`/v1/documents/${d.source.split("/").map(encodeURIComponent).join("/")}?root=${encodeURIComponent(d.root)}`,
        { method: "DELETE" });
      loadDocuments();
    } }))));
}

function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file);
  const bar = $("upload-progress");
  const report = $("upload-report");
  bar.hidden = false; bar.value = 0;
  report.replaceChildren(el("span", { text: `Uploading ${files.length} file(s)…` }));
  const request = new XMLHttpRequest();
  request.open("POST", "/v1/documents");
  if (auth.key) request.setRequestHeader("Authorization", `Bearer ${auth.key}`);
  request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
  request.upload.onload = () => report.replaceChildren(el("span", { text: "Ingesting…" }));
  request.onload = async () => {
    bar.hidden = true;
    if (request.status === 401) { await askKey(); upload(files); return; }
    let body;
    try { body = JSON.parse(request.responseText); } catch { body = { error: { message: request.statusText } }; }
    if (request.status >= 400) {
      report.replaceChildren(el("span", { class: "rejected", text: `Not stored: ${body.error.message}` }));
      return;
    }
    const lines = [];
    for (const kind of ["added", "updated", "unchanged"]) if (body[kind].length) lines.push(el("div", { text: `${kind}: ${body[kind].join(", ")}` }));
    for (const r of body.rejected) {
      lines.push(el("div", { class: "rejected", text: `rejected: ${r.source}: ${r.reason}${r.hint ? ` (${r.hint})` : ""}` }));
    }
    lines.push(el("div", { text: `${plural(body.chunks, "chunk")} from ${plural(body.documents, "document")} in ${body.seconds.toFixed(1)} s` }));
    report.replaceChildren(...lines);
    loadDocuments();
  };
  request.onerror = () => { bar.hidden = true; report.replaceChildren(el("span", { class: "rejected", text: "Upload failed" })); };
  request.send(form);
}

function wire() {
  $("ask").onsubmit = (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!question || $("send").disabled) return;
    $("question").value = "";
    ask(question);
  };
  $("question").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
  };
  $("new-chat").onclick = () => { state.current = null; renderAll(); $("question").focus(); };
  $("menu").onclick = () => $("side").classList.toggle("open");
  $("files").onchange = (e) => { upload([...e.target.files]); e.target.value = ""; };
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) document.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) document.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => upload([...e.dataTransfer.files]));
}

wire();
state.current = state.conversations[0] || null;
renderAll();
loadModels().then(loadDocuments).catch((error) => {
  $("messages").replaceChildren(el("div", { class: "message error", text: `Cannot reach the server: ${error.message}` }));
});
