// Shared by every page: the served-modules list, calls to /predict/<module> with the api token,
// files as base64, and drawing boxes with captions on a canvas.
"use strict";

const TOKEN_KEY = "clas_system.api_token";
const PALETTE = ["#e6194b", "#3c8c3c", "#0082c8", "#f58230", "#911eb4", "#008080", "#aa6e28", "#800000", "#000080", "#808000"];

class ServerError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function query(name) { return new URLSearchParams(location.search).get(name); }

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function servedModules() {
  const response = await fetch("/ui/api/modules");
  if (!response.ok) throw new Error(`cannot list the served modules (HTTP ${response.status})`);
  return (await response.json()).modules;
}

function isUnauthorized(response, body) {
  return response.status === 401 || /unauthori[sz]ed/i.test((body && body.msg) || "");
}

// Ask for the api token in a small dialog; resolves once the user saved one.
function askForToken(reason) {
  let dialog = document.getElementById("token-dialog");
  if (!dialog) {
    dialog = el("div", { id: "token-dialog" },
      el("form", {},
        el("h2", {}, "API token"),
        el("p", { class: "muted", id: "token-reason" }),
        el("div", { class: "row" },
          el("input", { type: "password", id: "token-input", placeholder: "serving.api_token", size: "30", autocomplete: "off" }),
          el("button", { type: "submit", id: "token-save" }, "Use token"))));
    document.body.append(dialog);
  }
  document.getElementById("token-reason").textContent = reason;
  dialog.classList.add("open");
  const input = document.getElementById("token-input");
  input.value = "";
  input.focus();
  return new Promise(resolve => {
    dialog.querySelector("form").onsubmit = event => {
      event.preventDefault();
      localStorage.setItem(TOKEN_KEY, input.value.trim());
      dialog.classList.remove("open");
      resolve();
    };
  });
}

// POST a JSON payload to /predict/<module>; returns `results`, raises ServerError with the
// server's message. Asks for the api token when the server wants one, then retries.
async function callModule(module, payload) {
  for (;;) {
    const token = localStorage.getItem(TOKEN_KEY);
    const headers = { "Content-Type": "application/json" };
    if (token) headers["Authorization"] = `Bearer ${token}`;
    const response = await fetch(`/predict/${encodeURIComponent(module)}`, { method: "POST", headers, body: JSON.stringify(payload) });
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (isUnauthorized(response, body)) {
      await askForToken(token ? "The server refused this token; enter the right one." : "This server needs its api_token.");
      continue;
    }
    if (!body) throw new ServerError(String(response.status), `HTTP ${response.status}: the server's answer is not JSON`);
    if (body.status !== "000") throw new ServerError(body.status, body.msg || `HTTP ${response.status}`);
    return body.results;
  }
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`${file.name}: cannot be read`));
    reader.readAsDataURL(file);
  });
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot display this image"));
    image.src = src;
  });
}

function colourFor(label) {
  let hash = 0;
  for (const char of String(label)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

// regions: [{bbox: [x1, y1, x2, y2], caption, key}] in image pixels.
function drawRegions(canvas, image, regions) {
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const size = Math.max(14, Math.min(48, Math.round(Math.min(canvas.width, canvas.height) / 22)));
  const line = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 200));
  context.font = `${size}px "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif`;
  context.textBaseline = "top";
  for (const { bbox, caption, key } of regions) {
    const [x1, y1, x2, y2] = bbox;
    const colour = colourFor(key);
    context.strokeStyle = colour;
    context.lineWidth = line;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const pad = Math.max(2, Math.round(size / 6));
    const width = context.measureText(caption).width + 2 * pad;
    const height = size + 2 * pad;
    const top = y1 - height >= 0 ? y1 - height : y1 + line;
    const left = Math.min(Math.max(0, x1), Math.max(0, canvas.width - width));
    context.fillStyle = colour;
    context.fillRect(left, top, width, height);
    context.fillStyle = "#fff";
    context.fillText(caption, left + pad, top + pad);
  }
}

function fixed(score) { return Number(score).toFixed(3); }

function dropZone(zone, input, onFiles) {
  zone.addEventListener("dragover", event => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", event => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles([...event.dataTransfer.files]);
  });
  input.addEventListener("change", () => { onFiles([...input.files]); input.value = ""; });
}
