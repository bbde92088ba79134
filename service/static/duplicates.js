"use strict";
// The merchant page's near-duplicates section: the catalogue report, or one photo checked.
(() => {
  const $ = (id) => document.getElementById(id);

  function figure(im) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = im.sku ? `${im.sku}, image ${im.image_id}` : im.file;
    img.loading = "lazy";
    if (im.url) skulens.imageSrc(img, im.url);
    const cap = document.createElement("figcaption");
    cap.textContent = im.sku ? `${im.sku} · image ${im.image_id}` : `your photo (${im.file})`;
    fig.append(img, cap);
    return fig;
  }

  function show(report, photo) {
    const box = $("dedup-groups");
    box.replaceChildren();
    const n = report.groups.length;
    $("dedup-summary").textContent = photo
      ? (n ? `Already in the catalogue as ${report.groups[0].skus.join(", ")}.` : "Not in the catalogue: this photo is new.")
      : `${n} group(s) of near-duplicate images` + (report.skipped.length ? `; ${report.skipped.length} skipped.` : ".");
    report.groups.forEach((g, i) => {
      const el = $("dup-group").content.firstElementChild.cloneNode(true);
      el.querySelector(".dup-title").textContent =
        `Group ${i + 1}: ${g.images.length} images` + (g.skus.length ? `, SKUs ${g.skus.join(", ")}` : "");
      el.querySelector(".dup-images").append(...g.images.map(figure));
      const body = el.querySelector("tbody");
      for (const p of g.pairs) {
        const tr = document.createElement("tr");
        for (const v of [p.a, p.b, p.layer, p.score.toFixed(3)]) {
          const td = document.createElement("td");
          td.textContent = String(v);
          tr.append(td);
        }
        body.append(tr);
      }
      box.append(el);
    });
  }

  $("dedup-run").addEventListener("click", async () => {
    skulens.status("Looking for near-duplicates…");
    try {
      show(await skulens.call("GET", "/v1/duplicates"), false);
      skulens.status("");
    } catch (e) {
      skulens.status(e.message, true);
    }
  });
  $("dedup-photo").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    skulens.status(`Checking ${file.name}…`);
    try {
      show(await skulens.call("POST", "/v1/duplicates", form), true);
      skulens.status("");
    } catch (e) {
      skulens.status(e.message, true);
    }
  });
})();
