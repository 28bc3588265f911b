// phototag web page: upload or pick photos, then accept or reject suggested keywords.
// Plain JavaScript, no build step; talks only to this service's /api.
"use strict";

const state = {
  token: sessionStorage.getItem("phototag-token"), info: null, folder: "", offset: 0, keyword: "",
};
// Types every browser shows; others (HEIC, TIFF) get the service's JPEG thumbnail instead.
const VIEWABLE = /^image\/(jpeg|png|gif|webp|bmp|avif)$/;
const $ = (selector) => document.querySelector(selector);

function takeTokenFromAddress() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    state.token = decodeURIComponent(match[1]);
    sessionStorage.setItem("phototag-token", state.token);
    history.replaceState(null, "", location.pathname);  // keep it out of history and screenshots
  }
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-Phototag", "1");  // the service refuses changes without it (no cross-site forms)
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) askForToken();
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(response.status, detail);
  }
  return response;
}

function askForToken() {
  $("#app").hidden = true;
  $("#token-form").hidden = false;
  setStatus("");
}

function setStatus(text) { $("#status").textContent = text; }

// A queue that runs at most `limit` thumbnail requests at once.
function limiter(limit) {
  let running = 0;
  const waiting = [];
  const next = () => {
    if (running >= limit || !waiting.length) return;
    running += 1;
    const [task, resolve, reject] = waiting.shift();
    task().then(resolve, reject).finally(() => { running -= 1; next(); });
  };
  return (task) => new Promise((resolve, reject) => { waiting.push([task, resolve, reject]); next(); });
}
const thumbnails = limiter(4);

async function imageUrl(path) {
  const response = await thumbnails(() => api(path));
  return URL.createObjectURL(await response.blob());
}

// ------------------------------------------------------------------ cards
function newCard(name, preview) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  card.classList.add("busy");
  if (typeof preview === "string") card.querySelector("img").src = preview;
  else if (preview) preview.then((url) => { card.querySelector("img").src = url; }).catch(() => {});
  card.querySelector(".accept-all").addEventListener("click", () => acceptAll(card));
  card.querySelector(".download").addEventListener("click", () => downloadSidecar(card));
  card.querySelector(".add-tag").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.querySelector("input");
    const label = input.value.trim();
    if (label && card.dataset.photoId) {
      decide(card, label, "accepted", null);
      input.value = "";
    }
  });
  $("#cards").prepend(card);
  return card;
}

function showError(card, message) {
  card.classList.remove("busy");
  const error = card.querySelector(".error");
  error.textContent = message;
  error.hidden = false;
}

function render(card, result) {
  card.classList.remove("busy");
  card.dataset.photoId = result.photo.id;
  card.querySelector(".name").textContent = result.photo.name;
  card.tags = result.tags;
  const chips = card.querySelector(".chips");
  chips.replaceChildren();
  for (const tag of result.tags) {
    const item = chip(card, tag.label, tag.score, tag.decision);
    if (tag.in_photo) {
      item.classList.add("in-photo");
      item.title = "already in the photo's keywords";
    }
    chips.append(item);
  }
  const shown = new Set(result.tags.map((tag) => tag.label));
  for (const d of result.decisions) {
    if (!shown.has(d.label)) chips.append(chip(card, d.label, d.score, d.decision));
  }
  const existing = card.querySelector(".existing");
  existing.querySelector("span").textContent = result.existing.join(", ");
  existing.hidden = !result.existing.length;
  card.querySelector(".accept-all").hidden = !result.tags.length;
  card.querySelector(".download").hidden = result.photo.source !== "upload";
  if (!result.writes) setWritten(card, "keywords are not written into folder photos (--write none)");
  if (result.metadata_error) showError(card, `keywords cannot be written: ${result.metadata_error}`);
  else if (!result.tags.length) showError(card, "no keyword suggested; add your own below");
}

function setWritten(card, text) { card.querySelector(".written").textContent = text; }

function showWritten(card, written) {
  if (!written) return;
  const edits = [...written.added.map((k) => `+${k}`), ...written.removed.map((k) => `-${k}`)];
  setWritten(card, `${written.file}: ${edits.join(" ")}`);
}

function chip(card, label, score, decision) {
  const item = document.createElement("li");
  item.className = "chip";
  item.dataset.label = label;
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label;
  item.append(name);
  if (score !== null && score !== undefined) {
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(2);
    item.append(value);
  }
  for (const [verdict, symbol, title] of [["accepted", "✓", "accept"], ["rejected", "✗", "reject"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = title;
    button.textContent = symbol;
    button.title = `${title} "${label}"`;
    button.addEventListener("click", () => decide(card, label, verdict, score ?? null));
    item.append(button);
  }
  setDecision(item, decision);
  return item;
}

function setDecision(item, decision) {
  item.classList.toggle("accepted", decision === "accepted");
  item.classList.toggle("rejected", decision === "rejected");
  if (decision) item.dataset.decision = decision; else delete item.dataset.decision;
}

async function decide(card, label, decision, score) {
  try {
    const response = await api(`/api/photos/${card.dataset.photoId}/decisions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label, decision, score }),
    });
    const saved = await response.json();
    showSaved(card, [saved], saved.written);
  } catch (error) {
    showError(card, error.message);
  }
}

function showSaved(card, decisions, written) {
  for (const saved of decisions) {
    let item = [...card.querySelectorAll(".chip")].find((c) => c.dataset.label === saved.label);
    if (!item) {
      item = chip(card, saved.label, saved.score, null);
      card.querySelector(".chips").append(item);
    }
    setDecision(item, saved.decision);
  }
  showWritten(card, written);
  card.querySelector(".error").hidden = true;
}

// One click: accept every suggestion shown on the card (one write of its sidecar).
async function acceptAll(card) {
  const tags = (card.tags || []).map((tag) => ({ label: tag.label, score: tag.score }));
  if (!tags.length || !card.dataset.photoId) return;
  try {
    const response = await api(`/api/photos/${card.dataset.photoId}/accepted`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tags }),
    });
    const saved = await response.json();
    showSaved(card, saved.decisions, saved.written);
  } catch (error) {
    showError(card, error.message);
  }
}

async function downloadSidecar(card) {
  try {
    const response = await api(`/api/photos/${card.dataset.photoId}/sidecar`);
    const name = /filename\*=UTF-8''([^;]+)/.exec(response.headers.get("Content-Disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name ? decodeURIComponent(name[1]) : "keywords.xmp";
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) {
    showError(card, error.message);
  }
}

// ---------------------------------------------------------------- uploads
async function upload(file) {
  const viewable = VIEWABLE.test(file.type);
  const card = newCard(file.name, viewable ? URL.createObjectURL(file) : null);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await api("/api/photos", { method: "POST", body: form });
    const result = await response.json();
    render(card, result);
    if (!viewable) {  // the browser cannot show it: the service's JPEG of it
      imageUrl(`/api/photos/${result.photo.id}/thumbnail?size=400`)
        .then((url) => { card.querySelector("img").src = url; }).catch(() => {});
    }
  } catch (error) {
    showError(card, error.message);
  }
}

function setUpUploads() {
  const input = $("#upload");
  input.addEventListener("change", () => {
    for (const file of input.files) upload(file);
    input.value = "";
  });
  const zone = $("#upload-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const file of event.dataTransfer.files) upload(file);
  });
}

// ----------------------------------------------------------------- folder
async function loadFolder(path, offset = 0) {
  const query = new URLSearchParams({ path, offset: String(offset) });
  if (state.keyword) query.set("keyword", state.keyword);
  let listing;
  try {
    listing = await (await api(`/api/folder?${query}`)).json();
  } catch (error) {
    setStatus(error.message);
    return;
  }
  state.folder = listing.path;
  state.offset = listing.offset + listing.photos.length;
  $("#folder-path").textContent = `/${listing.path}`;
  const dirs = $("#folder-dirs");
  const photos = $("#folder-photos");
  if (offset === 0) {
    dirs.replaceChildren();
    photos.replaceChildren();
    if (listing.parent !== null) dirs.append(folderButton("..", listing.parent));
    for (const entry of listing.folders) dirs.append(folderButton(`${entry.name}/`, entry.path));
  }
  for (const entry of listing.photos) photos.append(folderPhoto(entry));
  $("#folder-more").hidden = state.offset >= listing.total_photos;
}

function folderButton(text, path) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = text;
  button.addEventListener("click", () => loadFolder(path));
  return button;
}

function folderPhoto(entry) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.alt = entry.name;
  const caption = document.createElement("figcaption");
  caption.textContent = entry.name;
  figure.append(img, caption);
  const thumb = imageUrl(`/api/folder/thumbnail?${new URLSearchParams({ path: entry.path, size: "240" })}`);
  thumb.then((url) => { img.src = url; }).catch(() => {});
  figure.addEventListener("click", () => suggestFolderPhoto(entry, thumb));
  return figure;
}

async function suggestFolderPhoto(entry, thumb) {
  const card = newCard(entry.path, thumb);
  try {
    const response = await api("/api/folder/photos", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: entry.path }),
    });
    render(card, await response.json());
  } catch (error) {
    showError(card, error.message);
  }
}

// ------------------------------------------------------------------ start
async function start() {
  takeTokenFromAddress();
  try {
    state.info = await (await api("/api/info")).json();
  } catch (error) {
    if (error.status !== 401) setStatus(`cannot reach the service: ${error.message}`);
    return;
  }
  $("#token-form").hidden = true;
  $("#app").hidden = false;
  const mib = (state.info.max_upload_bytes / 2 ** 20).toFixed(0);
  setStatus(`model ${state.info.model} · ${state.info.labels} keywords · uploads up to ${mib} MiB`);
  $("#folder").hidden = !state.info.folder;
  if (state.info.folder) loadFolder("");
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUploads();
  $("#folder-more").addEventListener("click", () => loadFolder(state.folder, state.offset));
  $("#folder-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    state.keyword = $("#folder-keyword").value.trim();
    loadFolder(state.folder);
  });
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    sessionStorage.setItem("phototag-token", state.token);
    start();
  });
  start();
});
