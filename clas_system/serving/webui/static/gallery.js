// Gallery manager for rec_system, over its HTTP API: {"gallery": "stats" | "add" | "remove" | "search" | "save"}.
// gallery_items.js pages through the items and the review queue; it reloads on "gallery-changed".
"use strict";

const moduleName = query("module") || "rec_system";
const ADD_CHUNK = 16;  // images per add request
let labelCounts = {};
let chosenFiles = [];

function gallery(action, fields = {}) { return callModule(moduleName, { gallery: action, ...fields }); }

function showError(id, err) { document.getElementById(id).textContent = err ? err.message : ""; }

function renderStats(stats) {
  labelCounts = stats.labels;
  const items = [["items", stats.count], ["labels", Object.keys(stats.labels).length], ["dimension", stats.dim],
                 ["index", stats.method], ["metric", stats.metric]];
  if (stats.backend) items.push(["backend", stats.backend]);
  document.getElementById("stats").replaceChildren(...items.map(([name, value]) =>
    el("div", { class: "stat", "data-stat": name }, el("b", {}, value), el("span", { class: "muted" }, name))));
  renderLabels();
}

function renderLabels() {
  const filter = document.getElementById("filter").value.trim().toLowerCase();
  const table = document.getElementById("labels");
  const names = Object.keys(labelCounts).filter(name => name.toLowerCase().includes(filter));
  table.replaceChildren(el("tr", {}, el("th", {}, "label"), el("th", {}, "items"), el("th", {}, "")));
  if (!names.length) {
    table.append(el("tr", {}, el("td", { class: "muted", colspan: "3" }, Object.keys(labelCounts).length ? "no label matches" : "the gallery is empty")));
  }
  for (const name of names) {
    table.append(el("tr", { "data-label": name },
      el("td", { class: "label" }, name), el("td", { class: "num" }, labelCounts[name]),
      el("td", {}, el("button", { class: "danger", onclick: () => removeLabel(name) }, "remove label"))));
  }
}

async function refresh() {
  try {
    renderStats((await gallery("stats")).stats);
    showError("page-error", null);
    document.dispatchEvent(new Event("gallery-changed"));
  } catch (err) {
    showError("page-error", err);
  }
}

async function removeLabel(name) {
  if (!confirm(`Remove every item labelled “${name}” (${labelCounts[name]})?`)) return;
  try {
    await gallery("remove", { labels: [name] });
    await refresh();
  } catch (err) {
    showError("page-error", err);
  }
}

async function removeItem(id, row) {
  try {
    const { removed } = await gallery("remove", { ids: [id] });
    row.classList.add("removed");
    row.lastChild.replaceChildren(removed ? "removed" : "already gone");
    await refresh();
  } catch (err) {
    showError("search-error", err);
  }
}

function chooseFiles(files) {
  chosenFiles = files;
  document.getElementById("add").disabled = !files.length;
  document.getElementById("add-state").textContent = files.length ? `${files.length} image(s): ${files.map(f => f.name).join(", ")}` : "no images chosen";
}

async function addImages() {
  const label = document.getElementById("add-label").value.trim();
  const doc = document.getElementById("add-doc").value.trim();
  showError("add-error", null);
  if (!label) { showError("add-error", new Error("label: enter the label these images show")); return; }
  const button = document.getElementById("add");
  button.disabled = true;
  let added = 0;
  try {
    for (let start = 0; start < chosenFiles.length; start += ADD_CHUNK) {
      const chunk = chosenFiles.slice(start, start + ADD_CHUNK);
      const images = await Promise.all(chunk.map(readAsDataURL));
      const fields = { images, labels: chunk.map(() => label) };
      if (doc) fields.docs = chunk.map(() => doc);
      added += (await gallery("add", fields)).ids.length;
      document.getElementById("add-state").textContent = `added ${added} of ${chosenFiles.length} under “${label}”`;
    }
    chooseFiles([]);
    document.getElementById("add-state").textContent = `added ${added} image(s) under “${label}”`;
  } catch (err) {
    showError("add-error", err);
    button.disabled = false;
  }
  await refresh();
}

async function search(file) {
  const table = document.getElementById("hits");
  showError("search-error", null);
  table.replaceChildren();
  try {
    const k = Number(document.getElementById("search-k").value) || 5;
    const hits = (await gallery("search", { images: [await readAsDataURL(file)], k })).hits[0];
    table.append(el("tr", {}, el("th", {}, "id"), el("th", {}, "label"), el("th", {}, "note"), el("th", {}, "score"), el("th", {}, "")));
    if (!hits.length) table.append(el("tr", {}, el("td", { class: "muted", colspan: "5" }, "the gallery is empty")));
    for (const hit of hits) {
      const row = el("tr", { "data-id": hit.id },
        el("td", { class: "num" }, hit.id), el("td", { class: "label" }, hit.label), el("td", {}, hit.doc ?? ""),
        el("td", { class: "num" }, fixed(hit.score)), el("td", {}));
      row.lastChild.append(el("button", { class: "danger", onclick: () => removeItem(hit.id, row) }, "remove item"));
      table.append(row);
    }
  } catch (err) {
    showError("search-error", err);
  }
}

document.getElementById("title").textContent = `${moduleName} gallery`;
document.getElementById("predict-link").href = `/ui/predict.html?module=${encodeURIComponent(moduleName)}`;
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("save").addEventListener("click", async () => {
  try {
    renderStats((await gallery("save")).stats);
    document.getElementById("save-state").textContent = `saved at ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    showError("page-error", err);
  }
});
document.getElementById("filter").addEventListener("input", renderLabels);
document.getElementById("add").addEventListener("click", addImages);
document.getElementById("search-file").addEventListener("change", event => {
  if (event.target.files.length) search(event.target.files[0]);
});
dropZone(document.getElementById("add-drop"), document.getElementById("add-files"), chooseFiles);
document.body.dataset.ready = "true";
refresh();
