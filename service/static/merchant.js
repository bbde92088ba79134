"use strict";
// The merchant page's catalogue: add a product with its images, find, page through, edit, delete.
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let offset = 0;
  let editing = null;  // the product open in the edit dialog

  function say(el, text, isError) {
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  function productUrl(sku) {
    return "/v1/products/" + encodeURIComponent(sku);
  }

  // The form's metadata as the API takes it; `clear` sends null for an empty price (PATCH clears it).
  function fields(f, clear) {
    const e = f.elements;
    const meta = {title: e.title.value.trim(), brand: e.brand.value.trim(), category: e.category.value.trim(),
                  tags: e.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
                  description: e.description.value.trim()};
    if (e.price.value !== "") meta.price = Number(e.price.value);
    else if (clear) meta.price = null;
    return meta;
  }

  function listQuery() {
    const q = new URLSearchParams({offset: String(offset), limit: String(PAGE), sort: $("sort").value});
    const text = $("find").value.trim();
    if (text) q.set("q", text);
    if ($("without-images").checked) q.set("without_images", "true");
    return q;
  }

  async function load() {
    try {
      const page = await skulens.call("GET", "/v1/products?" + listQuery());
      if (page.total && offset >= page.total) {  // the last page emptied: show the one before
        offset = Math.floor((page.total - 1) / PAGE) * PAGE;
        return load();
      }
      const filtered = $("find").value.trim() || $("without-images").checked;
      $("total").textContent = `(${page.total}${filtered ? " found" : ""})`;
      const list = $("products");
      list.replaceChildren();
      for (const p of page.items) {
        const li = $("item").content.firstElementChild.cloneNode(true);
        li.dataset.sku = p.sku;
        li.querySelector(".title").textContent = p.title || p.sku;
        const details = [p.sku, `${p.images.length} image(s)`, p.brand, p.category,
                         p.price != null ? p.price.toFixed(2) : ""].filter(Boolean);
        li.querySelector(".sku").textContent = details.join(" · ");
        const img = li.querySelector("img");
        img.alt = p.title || p.sku;
        if (p.images.length) skulens.imageSrc(img, p.images[0].url);
        else {
          li.classList.add("noimage");
          li.querySelector(".badge").hidden = false;
          img.alt = "";  // the striped placeholder shows through an empty picture, not a broken one
          img.src = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E";
        }
        li.querySelector(".edit").addEventListener("click", () => edit(p.sku));
        li.querySelector(".delete").addEventListener("click", () => remove(p.sku));
        list.append(li);
      }
      const pages = Math.max(1, Math.ceil(page.total / PAGE));
      $("page-info").textContent = page.total
        ? `Page ${Math.floor(offset / PAGE) + 1} of ${pages}`
        : (filtered ? "No product matches." : "The catalogue is empty: add a product or import a CSV.");
      $("prev").disabled = offset === 0;
      $("next").disabled = offset + PAGE >= page.total;
    } catch (e) {
      skulens.status(e.message, true);
    }
  }

  async function remove(sku) {
    if (!confirm(`Delete ${sku} and its images?`)) return;
    try {
      await skulens.call("DELETE", productUrl(sku));
      skulens.status(`Deleted ${sku}.`);
      load();
    } catch (e) {
      skulens.status(e.message, true);
    }
  }

  // Adding creates the product and its images in one request: nothing is left behind when it fails,
  // and a SKU already in the catalogue is refused (409) with an offer to edit it instead.
  $("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const sku = f.elements.sku.value.trim();
    const form = new FormData();
    form.append("product", JSON.stringify(Object.assign({sku}, fields(f, false))));
    for (const file of f.elements.images.files) form.append("file", file);
    const out = $("add-status");
    say(out, `Adding ${sku}…`);
    const button = f.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await skulens.call("POST", "/v1/products", form);
      say(out, `Added ${sku}.`);
      f.reset();
      load();
    } catch (e) {
      say(out, e.message, true);
      if (e.status === 409) {
        out.textContent = `${sku} is already in the catalogue; nothing was changed. `;
        const open = document.createElement("button");
        open.type = "button";
        open.className = "link";
        open.textContent = `Edit ${sku}`;
        open.addEventListener("click", () => edit(sku));
        out.append(open);
      }
    } finally {
      button.disabled = false;
    }
  });

  function showImages(p) {
    const box = $("edit-images");
    box.replaceChildren();
    if (!p.images.length) {
      box.textContent = "No image yet: add one so that shoppers can find it by photo.";
      return;
    }
    for (const im of p.images) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = `${p.sku}, image ${im.id}`;
      skulens.imageSrc(img, im.url);
      const drop = document.createElement("button");
      drop.type = "button";
      drop.className = "delete";
      drop.textContent = "Remove";
      drop.addEventListener("click", async () => {
        if (!confirm(`Remove image ${im.id} of ${p.sku}?`)) return;
        try {
          await skulens.call("DELETE", `${productUrl(p.sku)}/images/${im.id}`);
          editing = await skulens.call("GET", productUrl(p.sku));
          showImages(editing);
          say($("edit-status"), `Removed image ${im.id}.`);
          load();
        } catch (e) {
          say($("edit-status"), e.message, true);
        }
      });
      fig.append(img, drop);
      box.append(fig);
    }
  }

  async function edit(sku) {
    try {
      editing = await skulens.call("GET", productUrl(sku));
    } catch (e) {
      skulens.status(e.message, true);
      return;
    }
    const e = $("edit-form").elements;
    $("edit-sku").textContent = sku;
    e.title.value = editing.title;
    e.brand.value = editing.brand;
    e.category.value = editing.category;
    e.tags.value = editing.tags.join(", ");
    e.price.value = editing.price != null ? String(editing.price) : "";
    e.description.value = editing.description;
    e.images.value = "";
    showImages(editing);
    say($("edit-status"), "");
    $("edit").showModal();
    suggest(sku);
  }

  // Tags the product's pictures suggest (their colours, the catalogue's words nearest them): a click adds one.
  async function suggest(sku) {
    const box = $("edit-suggest");
    box.hidden = true;
    let s;
    try {
      s = await skulens.call("GET", productUrl(sku) + "/suggested-tags");
    } catch {
      return;  // suggestions are a help, not the dialog's business: none shown
    }
    if (!editing || editing.sku !== sku) return;  // another product was opened meanwhile
    const chips = [...s.colours, ...s.words.map((w) => w.word)].map((word) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip";
      b.textContent = "+ " + word;
      b.title = s.source === "off" ? word : `from the pictures (${s.source})`;
      b.addEventListener("click", () => {
        const tags = $("edit-form").elements.tags;
        const have = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
        if (!have.includes(word)) tags.value = [...have, word].join(", ");
        b.remove();
      });
      return b;
    });
    box.querySelector("span").replaceChildren(...chips);
    box.hidden = !chips.length;
  }

  $("edit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const sku = editing.sku;
    const button = f.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      say($("edit-status"), "Saving…");
      await skulens.call("PATCH", productUrl(sku), fields(f, true), true);
      if (f.elements.images.files.length) {
        say($("edit-status"), "Adding the images…");
        const form = new FormData();
        for (const file of f.elements.images.files) form.append("file", file);
        await skulens.call("POST", productUrl(sku) + "/images", form);
      }
      $("edit").close();
      skulens.status(`Saved ${sku}.`);
      load();
    } catch (e) {
      say($("edit-status"), e.message, true);
    } finally {
      button.disabled = false;
    }
  });
  $("edit-cancel").addEventListener("click", () => $("edit").close());

  let typing = null;
  $("find").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { offset = 0; load(); }, 250);
  });
  $("find-form").addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; load(); });
  $("sort").addEventListener("change", () => { offset = 0; load(); });
  $("without-images").addEventListener("change", () => { offset = 0; load(); });
  document.addEventListener("skulens:catalogue-changed", load);
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("next").addEventListener("click", () => { offset += PAGE; load(); });
  load();
})();
