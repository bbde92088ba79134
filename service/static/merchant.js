"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let offset = 0;

  async function load() {
    try {
      const page = await skulens.call("GET", `/v1/products?offset=${offset}&limit=${PAGE}`);
      $("total").textContent = `(${page.total})`;
      const list = $("products");
      list.replaceChildren();
      for (const p of page.items) {
        const li = $("item").content.firstElementChild.cloneNode(true);
        li.dataset.sku = p.sku;
        li.querySelector(".title").textContent = p.title || p.sku;
        li.querySelector(".sku").textContent = `${p.sku} · ${p.images.length} image(s)`;
        const img = li.querySelector("img");
        img.alt = p.title || p.sku;
        if (p.images.length) skulens.imageSrc(img, p.images[0].url);
        li.querySelector(".delete").addEventListener("click", () => remove(p.sku));
        list.append(li);
      }
      $("prev").disabled = offset === 0;
      $("next").disabled = offset + PAGE >= page.total;
    } catch (e) {
      skulens.status(e.message, true);
    }
  }

  async function remove(sku) {
    if (!confirm(`Delete ${sku} and its images?`)) return;
    try {
      await skulens.call("DELETE", "/v1/products/" + encodeURIComponent(sku));
      skulens.status(`Deleted ${sku}.`);
      load();
    } catch (e) {
      skulens.status(e.message, true);
    }
  }

  $("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const sku = f.sku.value.trim();
    const meta = {title: f.title.value.trim(), brand: f.brand.value.trim(), category: f.category.value.trim(),
                  tags: f.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
                  description: f.description.value.trim()};
    if (f.price.value !== "") meta.price = Number(f.price.value);
    const url = "/v1/products/" + encodeURIComponent(sku);
    skulens.status(`Adding ${sku}…`);
    try {
      await skulens.call("PUT", url, meta, true);
      const form = new FormData();
      for (const file of f.images.files) form.append("file", file);
      await skulens.call("POST", url + "/images", form);
      skulens.status(`Added ${sku}.`);
      f.reset();
      load();
    } catch (e) {
      skulens.status(e.message, true);
    }
  });
  document.addEventListener("skulens:catalogue-changed", load);
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("next").addEventListener("click", () => { offset += PAGE; load(); });
  load();
})();
