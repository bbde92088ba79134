"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SIGNALS = ["embedding", "colour", "tags", "text"];
  let groups = [];

  function renderResults(group) {
    const grid = $("results");
    grid.replaceChildren();
    if (!group || !group.results.length) {
      skulens.status("No matching products.");
      return;
    }
    for (const r of group.results) {
      const card = $("card").content.firstElementChild.cloneNode(true);
      card.dataset.sku = r.sku;
      card.querySelector(".title").textContent = r.title || r.sku;
      card.querySelector(".sku").textContent = r.sku;
      card.querySelector(".score").textContent = "score " + r.score.toFixed(3);
      const dl = card.querySelector(".signals");
      for (const name of SIGNALS) {
        const v = r.signals[name] || 0;
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = Math.round(v * 100) + "%";
        bar.title = name + " " + v.toFixed(3);
        dd.append(bar);
        const num = document.createElement("small");
        num.textContent = v.toFixed(2);
        dd.append(num);
        dl.append(dt, dd);
      }
      const img = card.querySelector("img");
      img.alt = r.title || r.sku;
      skulens.imageSrc(img, r.image_url);
      grid.append(card);
    }
    skulens.status(group.results.length + " products");
  }

  function drawBoxes(size) {
    const layer = $("boxes");
    layer.replaceChildren();
    const [w, h] = size;
    groups.forEach((g, i) => {
      if (!g.query.box) return;
      const [x0, y0, x1, y1] = g.query.box;
      const b = document.createElement("button");
      b.className = "box" + (i === 0 ? " active" : "");
      b.type = "button";
      b.setAttribute("aria-label", "search object " + (i + 1));
      Object.assign(b.style, {left: (100 * x0 / w) + "%", top: (100 * y0 / h) + "%",
                              width: (100 * (x1 - x0) / w) + "%", height: (100 * (y1 - y0) / h) + "%"});
      b.addEventListener("click", () => {
        layer.querySelectorAll(".box").forEach((el) => el.classList.remove("active"));
        b.classList.add("active");
        renderResults(groups[i]);
      });
      layer.append(b);
    });
    $("box-hint").hidden = groups.length < 2;
  }

  $("photo").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    $("photo-img").src = URL.createObjectURL(file);
    $("preview").hidden = false;
    $("results").replaceChildren();
    $("boxes").replaceChildren();
    skulens.status("Searching…");
    const form = new FormData();
    form.append("file", file);
    form.append("k", "12");
    form.append("all_objects", "true");
    const text = $("text").value.trim();
    if (text) form.append("text", text);
    try {
      groups = await skulens.call("POST", "/v1/search", form);
      const size = groups[0].query.size;
      if (size) drawBoxes(size);
      renderResults(groups[0]);
    } catch (e) {
      skulens.status(e.message, true);
    }
    ev.target.value = "";
  });

  $("text-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("preview").hidden = true;
    skulens.status("Searching…");
    try {
      groups = [await skulens.call("POST", "/v1/search/text", {text, k: 12}, true)];
      renderResults(groups[0]);
    } catch (e) {
      skulens.status(e.message, true);
    }
  });
})();
