"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SIGNALS = ["embedding", "colour", "tags", "text", "verify"];

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

  let lastSize = [1, 1];  // the analysed photo's size, which the boxes refer to

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
    skulens.status("Searching…");
    const form = new FormData();
    form.append("file", blob, name);
    form.append("k", "12");
    const text = $("text").value.trim();
    if (text) form.append("text", text);
    try {
      const group = await skulens.call("POST", "/v1/search", form);
      if (isPhoto && group.query.size) drawBoxes(group.query.boxes, group.query.size);
      renderResults(group);
    } catch (e) {
      skulens.status(e.message, true);
    }
  }

  $("photo").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    $("photo-img").src = URL.createObjectURL(file);
    $("preview").hidden = false;
    $("results").replaceChildren();
    $("boxes").replaceChildren();
    await search(file, file.name || "photo.jpg", true);
    ev.target.value = "";
  });

  $("text-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("preview").hidden = true;
    skulens.status("Searching…");
    try {
      renderResults(await skulens.call("POST", "/v1/search/text", {text, k: 12}, true));
    } catch (e) {
      skulens.status(e.message, true);
    }
  });
})();
