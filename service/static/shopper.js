"use strict";
// The shopper page: search by photo (shrunk here before upload) or by words, with filters, and see
// why each product ranked: every signal's score and weight, the words and colours read from the photo.
(() => {
  const $ = (id) => document.getElementById(id);
  const PHOTO_SIGNALS = ["embedding", "colour", "tags", "text", "verify"];
  const WORD_SIGNALS = ["text", "semantic"];  // semantic: the typed words against the pictures, in word space
  // the signals that count for a search: a photo's five, typed words' two, or all six for both
  function counting(hasPhoto, hasWords) {
    if (!hasPhoto) return WORD_SIGNALS;
    return hasWords ? [...PHOTO_SIGNALS, "semantic"] : PHOTO_SIGNALS;
  }
  const K = 12;
  const MAX_SIDE = 1600;  // photos are shrunk to this longer side before upload
  let last = null;  // the last search, re-run when a filter changes: {blob, name, isPhoto} or {text}
  let lastSize = [1, 1];  // the analysed photo's size, which the boxes refer to

  // -- filters ------------------------------------------------------------------------------
  function fill(id, values) {
    const select = $(id);
    select.replaceChildren(new Option(values.length ? "any" : "none in this catalogue", ""));
    for (const v of values) select.append(new Option(`${v.value} (${v.count})`, v.value));
    select.disabled = !values.length;
  }

  async function loadFacets() {
    try {
      const f = await skulens.call("GET", "/v1/facets");
      fill("f-category", f.categories);
      fill("f-brand", f.brands);
      fill("f-colour", f.colours);
      const priced = f.price.products > 0;
      for (const id of ["f-price-min", "f-price-max"]) $(id).disabled = !priced;
      if (priced) {
        $("f-price-min").placeholder = f.price.min.toFixed(2);
        $("f-price-max").placeholder = f.price.max.toFixed(2);
      }
      const none = [["categories", f.categories.length], ["brands", f.brands.length], ["prices", priced]]
        .filter(([, has]) => !has).map(([name]) => name);
      $("filter-note").textContent = none.length ? `This catalogue has no ${none.join(" or ")} yet.` : "";
    } catch (e) {
      $("filter-note").textContent = "Filters unavailable: " + e.message;
    }
  }

  function filters() {
    const f = {};
    for (const [key, id] of [["category", "f-category"], ["brand", "f-brand"], ["colour", "f-colour"]]) {
      if ($(id).value) f[key] = $(id).value;
    }
    for (const [key, id] of [["price_min", "f-price-min"], ["price_max", "f-price-max"]]) {
      if ($(id).value !== "" && !Number.isNaN(Number($(id).value))) f[key] = Number($(id).value);
    }
    return f;
  }

  function filtersChanged() {
    const n = Object.keys(filters()).length;
    $("filter-count").textContent = n ? `(${n} on)` : "";
    if (last) rerun();
  }

  // -- what the search read from the photo, and the results --------------------------------
  function clearResults() {
    $("results").replaceChildren();
    $("weights").textContent = "";
    $("notes").replaceChildren();
    $("seen").replaceChildren();
  }

  function resetPhoto() {
    $("preview").hidden = true;
    $("boxes").replaceChildren();
    $("box-hint").hidden = true;
    $("photo-img").removeAttribute("src");
  }

  function fail(message) {
    clearResults();
    skulens.status(message, true);
  }

  function seenRow(label, ...content) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.append(...content);
    $("seen").append(dt, dd);
  }

  function showSeen(q) {
    $("seen").replaceChildren();
    const words = (q.ocr || []).map((w) => w.word);
    seenRow("Words read", words.length ? words.join(", ") : "none");
    const swatches = (q.palette.hex || []).map((hex, i) => {
      const s = document.createElement("span");
      s.className = "swatch";
      s.style.background = hex;
      s.title = `${hex} · ${Math.round(100 * (q.palette.weights[i] || 0))}%`;
      return s;
    });
    seenRow("Colours", ...swatches, " " + ((q.palette.names || []).join(", ") || ""));
    seenRow("Looks like", (q.tags || []).slice(0, 3).map((t) => t.label).join(", ") || "—");
    seenRow("Described as", (q.describe || []).join(", ") || "—");
  }

  function card(r, weights, names) {
    const el = $("card").content.firstElementChild.cloneNode(true);
    el.dataset.sku = r.sku;
    el.querySelector(".title").textContent = r.title || r.sku;
    el.querySelector(".sku").textContent = r.sku;
    el.querySelector(".facts").textContent = [r.brand, r.category, r.price != null ? r.price.toFixed(2) : ""]
      .filter(Boolean).join(" · ");
    el.querySelector(".score").textContent = "score " + r.score.toFixed(3);
    const dl = el.querySelector(".signals");
    for (const name of names) {  // only the signals this search has
      const v = r.signals[name] || 0;
      const w = weights[name] || 0;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      if (!w) dd.className = "off";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(v * 100) + "%";
      bar.title = `${name} ${v.toFixed(3)} × weight ${w.toFixed(2)} = ${(v * w).toFixed(3)} of the score`;
      const num = document.createElement("small");
      num.textContent = v.toFixed(2);
      dd.append(bar, num);
      dl.append(dt, dd);
    }
    const img = el.querySelector("img");
    img.alt = r.title || r.sku;
    skulens.imageSrc(img, r.image_url);
    return el;
  }

  function showWeights(weights, names) {
    $("weights").textContent = "Score = " + names.map((n) => `${(weights[n] || 0).toFixed(2)} × ${n}`).join(" + ");
  }

  function render(group, text) {
    clearResults();
    const results = group.results;
    if (group.query && group.query.size) showSeen(group.query);
    const hasPhoto = Boolean(group.query && group.query.size);
    const names = counting(hasPhoto, Boolean(text));
    if (results.length) showWeights(group.weights || {}, names);

    for (const note of group.notes || []) {
      const li = document.createElement("li");
      li.textContent = note;
      $("notes").append(li);
    }
    const grid = $("results");
    for (const r of results) grid.append(card(r, group.weights || {}, names));
    const filtered = Object.keys(filters()).length ? " with these filters" : "";
    if (!results.length) skulens.status(`No product matches${text ? ` “${text}”` : ""}${filtered}.`);
    else if (group.close === false) {
      skulens.status("No close match in the catalogue: these are the nearest products.", true);
    } else if (text && !group.query.size) {
      skulens.status(`${results.length === K ? "The best " + K : results.length} product(s) match “${text}”${filtered}.`);
    } else skulens.status(`The ${results.length} closest product(s)${filtered}.`);
  }

  // -- searching -----------------------------------------------------------------------------
  // Tapping a box searches that object: the box is cut out of the photo here and searched alone.
  async function searchBox(box) {
    const img = $("photo-img");
    const [x0, y0, x1, y1] = box;
    const scale = img.naturalWidth / lastSize[0];
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(16, Math.round((x1 - x0) * scale));
    canvas.height = Math.max(16, Math.round((y1 - y0) * scale));
    canvas.getContext("2d").drawImage(img, x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale,
                                      0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    await search(blob, "box.jpg", false);
  }

  function drawBoxes(boxes, size) {
    const layer = $("boxes");
    layer.replaceChildren();
    lastSize = size;
    const [w, h] = size;
    boxes.forEach((box, i) => {
      const [x0, y0, x1, y1] = box;
      const b = document.createElement("button");
      b.className = "box" + (i === 0 ? " active" : "");
      b.type = "button";
      b.setAttribute("aria-label", "search object " + (i + 1));
      Object.assign(b.style, {left: (100 * x0 / w) + "%", top: (100 * y0 / h) + "%",
                              width: (100 * (x1 - x0) / w) + "%", height: (100 * (y1 - y0) / h) + "%"});
      b.addEventListener("click", () => {
        layer.querySelectorAll(".box").forEach((el) => el.classList.remove("active"));
        b.classList.add("active");
        searchBox(box);
      });
      layer.append(b);
    });
    $("box-hint").hidden = boxes.length < 2;
  }

  async function search(blob, name, isPhoto) {
    last = {blob, name, isPhoto};
    skulens.status("Searching…");
    const form = new FormData();
    form.append("file", blob, name);
    form.append("k", String(K));
    const text = $("text").value.trim();
    if (text) form.append("text", text);
    const f = filters();
    if (Object.keys(f).length) form.append("filters", JSON.stringify(f));
    try {
      const group = await skulens.call("POST", "/v1/search", form);
      if (isPhoto && group.query.size) drawBoxes(group.query.boxes, group.query.size);
      render(group, text);
    } catch (e) {
      if (isPhoto) resetPhoto();  // the photo could not be searched: do not leave it on screen
      fail(e.message);
    }
  }

  async function searchText(text) {
    last = {text};
    skulens.status("Searching…");
    const body = {text, k: K};
    const f = filters();
    if (Object.keys(f).length) body.filters = f;
    try {
      render(await skulens.call("POST", "/v1/search/text", body, true), text);
    } catch (e) {
      fail(e.message);
    }
  }

  function rerun() {
    if (last.text) searchText(last.text);
    else search(last.blob, last.name, last.isPhoto);
  }

  // A phone photo is shrunk here (EXIF orientation applied) before it is sent: a 48-megapixel
  // photo is 10 MB or more. A file this browser cannot decode (e.g. HEIC) goes as it is.
  async function shrink(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, {imageOrientation: "from-image"});
    } catch {
      return file;
    }
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    if (scale === 1) {
      bitmap.close();
      return file;
    }
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    return blob || file;
  }

  $("photo").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    resetPhoto();
    clearResults();
    skulens.status("Preparing the photo…");
    const blob = await shrink(file);
    $("photo-img").src = URL.createObjectURL(blob);
    $("preview").hidden = false;
    const name = blob === file ? (file.name || "photo.jpg") : (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg";
    await search(blob, name, true);
  });

  $("text-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    resetPhoto();
    await searchText(text);
  });

  for (const id of ["f-category", "f-brand", "f-colour", "f-price-min", "f-price-max"]) {
    $(id).addEventListener("change", filtersChanged);
  }
  $("f-clear").addEventListener("click", () => {
    for (const id of ["f-category", "f-brand", "f-colour", "f-price-min", "f-price-max"]) $(id).value = "";
    filtersChanged();
  });
  loadFacets();
})();
