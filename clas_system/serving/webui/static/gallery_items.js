// The gallery page's items and review queue, over rec_system's {"gallery": "list" | "thumbnail" |
// "relabel" | "remove" | "review" | "enrol" | "dismiss"} actions (gallery() and showError from gallery.js).
"use strict";

const PAGE_SIZE = 24;
let itemsAfter = [null];  // the `after` cursor of each page seen: back pages without deep offsets

function thumbnailElement(base64) {
  return base64 ? el("img", { src: `data:image/jpeg;base64,${base64}`, alt: "" }) : el("div", { class: "noimage" }, "no image kept");
}

function itemCard(item, thumbnail) {
  const input = el("input", { type: "text", value: item.label, "aria-label": "new label" });
  const card = el("div", { class: "card", "data-id": item.id },
    thumbnailElement(thumbnail),
    el("div", { class: "label", title: item.label }, item.label),
    el("div", { class: "muted" }, `#${item.id}${item.doc ? " · " + item.doc : ""}`),
    input,
    el("div", { class: "row" },
      el("button", { class: "secondary relabel", onclick: () => relabelItem(item.id, input.value) }, "relabel"),
      el("button", { class: "danger remove", onclick: () => removeCard(item.id) }, "remove")));
  return card;
}

async function loadItems() {
  const fields = { limit: PAGE_SIZE };
  const label = document.getElementById("items-label").value.trim();
  const text = document.getElementById("items-query").value.trim();
  if (label) fields.label = label;
  if (text) fields.query = text;
  const after = itemsAfter[itemsAfter.length - 1];
  if (after !== null) fields.after = after;
  try {
    const { items, total } = await gallery("list", fields);
    const thumbnails = items.length ? (await gallery("thumbnail", { ids: items.map(i => i.id) })).thumbnails : [];
    const box = document.getElementById("items");
    box.replaceChildren(...items.map((item, i) => itemCard(item, thumbnails[i])));
    if (!items.length) box.append(el("p", { class: "muted" }, total ? "no more items" : "no item matches"));
    const first = (itemsAfter.length - 1) * PAGE_SIZE;
    document.getElementById("items-page").textContent = items.length ? `${first + 1}–${first + items.length} of ${total}` : `${total} items`;
    document.getElementById("items-prev").disabled = itemsAfter.length < 2;
    document.getElementById("items-next").disabled = first + items.length >= total;
    box.dataset.next = items.length ? items[items.length - 1].id : "";
    showError("items-error", null);
  } catch (err) {
    showError("items-error", err);
  }
}

async function relabelItem(id, label) {
  try {
    await gallery("relabel", { ids: [id], label: label.trim() });
    await refresh();
  } catch (err) {
    showError("items-error", err);
  }
}

async function removeCard(id) {
  try {
    await gallery("remove", { ids: [id] });
    await refresh();
  } catch (err) {
    showError("items-error", err);
  }
}

function reviewCard(entry) {
  const input = el("input", { type: "text", placeholder: "label to enrol under", "aria-label": "label",
                              value: entry.candidate ? entry.candidate.label : "" });
  const candidate = entry.candidate ? `closest: ${entry.candidate.label} (${fixed(entry.candidate.score)})` : "gallery was empty";
  return el("div", { class: "card", "data-entry": entry.id },
    thumbnailElement(entry.thumbnail),
    el("div", { class: "muted" }, new Date(entry.at * 1000).toLocaleString()),
    el("div", { class: "muted candidate" }, candidate),
    input,
    el("div", { class: "row" },
      el("button", { class: "enrol", onclick: () => enrol(entry.id, input.value) }, "enrol"),
      el("button", { class: "danger dismiss", onclick: () => dismiss(entry.id) }, "dismiss")));
}

async function loadReview() {
  try {
    const { entries, total, enabled } = await gallery("review", { limit: PAGE_SIZE });
    document.getElementById("review").replaceChildren(...entries.map(reviewCard));
    document.getElementById("review-state").textContent = enabled
      ? `${total} unrecognised region(s) kept for review, newest first`
      : `the review queue is off (set gallery.curation.review_max to keep unrecognised regions)${total ? `; ${total} kept earlier` : ""}`;
    showError("review-error", null);
  } catch (err) {
    showError("review-error", err);
  }
}

async function enrol(id, label) {
  try {
    await gallery("enrol", { id, label: label.trim() });
    await refresh();
  } catch (err) {
    showError("review-error", err);
  }
}

async function dismiss(id) {
  try {
    await gallery("dismiss", { ids: [id] });
    await refresh();
  } catch (err) {
    showError("review-error", err);
  }
}

function restartItems() { itemsAfter = [null]; loadItems(); }

document.addEventListener("gallery-changed", () => { loadItems(); loadReview(); });
document.getElementById("items-label").addEventListener("change", restartItems);
document.getElementById("items-query").addEventListener("change", restartItems);
document.getElementById("items-next").addEventListener("click", () => {
  itemsAfter.push(Number(document.getElementById("items").dataset.next));
  loadItems();
});
document.getElementById("items-prev").addEventListener("click", () => { itemsAfter.pop(); loadItems(); });
