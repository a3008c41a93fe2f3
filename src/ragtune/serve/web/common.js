// What ragtune's pages share: element helpers, the API key (asked once, kept in this browser) and API calls.
// Loaded before each page's own script. Text is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const auth = { key: localStorage.getItem("ragtune-key") || "" };

// el("button", { text: "Go", class: "primary", onclick: f }, child, ...): attributes, except `text` (the
// textContent) and on* (event handlers).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value; else if (name.startsWith("on")) node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function plural(n, word) { return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`; }

// Shows the modal dialog `dialogId`; resolves once its form `formId` is submitted, after `read()` took the values.
function askDialog(dialogId, formId, read) {
  return new Promise((resolve) => {
    $(formId).onsubmit = () => { read(); resolve(); };
    $(dialogId).showModal();
  });
}

// The API key dialog, the same on every page.
document.body.append(el("dialog", { id: "key-dialog" },
  el("form", { id: "key-form", method: "dialog" },
    el("h3", { text: "API key" }),
    el("p", { text: "This server needs its API key. It is kept in this browser only." }),
    el("input", { id: "key", type: "password", autocomplete: "off", required: "" }),
    el("button", { type: "submit", text: "Continue" }))));

let keyAsked = null;  // one dialog for concurrent requests that all got 401
function askKey() {
  keyAsked = keyAsked || askDialog("key-dialog", "key-form", () => {
    auth.key = $("key").value.trim();
    localStorage.setItem("ragtune-key", auth.key);
  }).finally(() => { keyAsked = null; });
  return keyAsked;
}

// fetch() with the key; asks for the key on 401 and retries. A string body is sent as JSON. Errors throw with the
// server's message, and its `code` and `status` on the error.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (typeof options.body === "string" && !headers["Content-Type"]) headers["Content-Type"] = "application/json";
  if (auth.key) headers.Authorization = `Bearer ${auth.key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { await askKey(); return api(path, options); }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error((body.error && body.error.message) || `${response.status}`);
    error.code = body.error && body.error.code;
    error.status = response.status;
    throw error;
  }
  return response;
}

// api() answering the parsed JSON body.
async function apiJson(path, options = {}) { return (await api(path, options)).json(); }
