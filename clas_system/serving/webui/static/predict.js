// One page for clas_system (top-k bars), det_system (boxes) and rec_system (boxes + labels).
"use strict";

const moduleName = query("module");
let kind = null;

function optionFields() {
  const options = document.getElementById("options");
  if (kind === "classify") {
    options.append(el("label", {}, "top-k ", el("input", { type: "number", id: "top-k", min: "1", max: "100", value: "5" })));
  } else if (kind === "detect") {
    options.append(el("label", {}, "score threshold ", el("input", { type: "number", id: "threshold", min: "0", max: "1", step: "0.05", placeholder: "server default" })));
  }
}

function requestFields() {
  if (kind === "classify") return { top_k: Number(document.getElementById("top-k").value) || 5 };
  const threshold = kind === "detect" ? document.getElementById("threshold").value : "";
  return threshold === "" ? {} : { threshold: Number(threshold) };
}

function topkBars(result) {
  const names = result.label_names || result.class_ids.map(String);
  const list = el("div", { class: "topk" });
  names.forEach((name, rank) => {
    const score = result.scores[rank];
    list.append(el("div", { class: "bar" + (rank === 0 ? " best" : "") },
      el("span", { class: "label", title: name }, name),
      el("span", { class: "track" }, el("span", { class: "fill", style: `display:block;width:${(100 * score).toFixed(1)}%` })),
      el("span", { class: "score num" }, fixed(score))));
  });
  return list;
}

function regionTable(regions) {
  if (!regions.length) return el("p", { class: "muted" }, kind === "recognize" ? "nothing recognised" : "no boxes above the threshold");
  const recognize = kind === "recognize";
  const table = el("table", { class: "regions" }, el("tr", {},
    el("th", {}, "label"), el("th", {}, "score"), ...(recognize ? [el("th", {}, "gallery id")] : []), el("th", {}, "box")));
  for (const region of regions) {
    const label = recognize ? region.rec_docs : region.label;
    const score = recognize ? region.rec_scores : region.score;
    table.append(el("tr", {},
      el("td", { class: "label" }, label), el("td", { class: "num" }, fixed(score)),
      ...(recognize ? [el("td", { class: "num" }, region.rec_id ?? "")] : []),
      el("td", { class: "muted" }, region.bbox.map(v => Math.round(v)).join(", "))));
  }
  return table;
}

function captions(regions) {
  return regions.map(region => kind === "recognize"
    ? { bbox: region.bbox, caption: `${region.rec_docs} ${Number(region.rec_scores).toFixed(2)}`, key: region.rec_docs }
    : { bbox: region.bbox, caption: `${region.label} ${Number(region.score).toFixed(2)}`, key: region.label });
}

async function predictFile(file) {
  const canvas = el("canvas");
  const answer = el("div", { class: "answer" }, el("p", { class: "muted" }, "sending…"));
  const card = el("div", { class: "result", "data-file": file.name }, el("div", {}, canvas), el("div", {}, el("h3", {}, file.name), answer));
  document.getElementById("results").prepend(card);
  try {
    const dataURL = await readAsDataURL(file);
    const image = await loadImage(dataURL);
    drawRegions(canvas, image, []);
    const results = await callModule(moduleName, { images: [dataURL], ...requestFields() });
    const result = results.prediction[0];
    if (kind === "classify") {
      answer.replaceChildren(topkBars(result));
    } else {
      drawRegions(canvas, image, captions(result));
      answer.replaceChildren(regionTable(result));
    }
    answer.append(el("p", { class: "muted" }, `server time ${Number(results.elapse).toFixed(3)} s`));
    card.classList.add("done");
  } catch (err) {
    answer.replaceChildren(el("p", { class: "error" }, err.message));
    card.classList.add("failed");
  }
}

async function predictFiles(files) {
  for (const file of files) await predictFile(file);  // in order, one request at a time
}

async function start() {
  document.getElementById("title").textContent = moduleName || "no module";
  document.title = `${moduleName}: paddleclas-serving`;
  const module = (await servedModules()).find(m => m.name === moduleName);
  if (!module || !module.kind) {
    throw new Error(module ? `${moduleName} has no page` : `${moduleName} is not served here; see the list of modules`);
  }
  kind = module.kind;
  if (module.gallery) {
    const link = document.getElementById("gallery-link");
    link.href = `/ui/gallery.html?module=${encodeURIComponent(moduleName)}`;
    link.hidden = false;
  }
  optionFields();
  dropZone(document.getElementById("drop"), document.getElementById("files"), predictFiles);
  document.body.dataset.ready = "true";  // images chosen from now on are sent
}

start().catch(err => { document.getElementById("page-error").textContent = err.message; });
