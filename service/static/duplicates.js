"use strict";
// The merchant page's near-duplicates section: the catalogue report, or one photo checked.
(() => {
  const $ = (id) => document.getElementById(id);
  let preview = null;  // the object URL of the photo being checked

  function label(im) {
    return im.sku ? `${im.sku} · image ${im.image_id}` : `your photo (${im.file})`;
  }

  function picture(im, small) {
    const img = document.createElement("img");
    img.alt = label(im);
    if (small) img.className = "thumb";
    if (im.url) skulens.imageSrc(img, im.url);
    else if (preview) img.src = preview;
    return img;
  }

  function figure(im) {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = label(im);
    fig.append(picture(im, false), cap);
    return fig;
  }

  // One side of a pair: the picture and the SKU holding it (pairs name image ids or the upload's name).
  function side(group, key) {
    const im = group.images.find((x) => (x.image_id != null ? x.image_id === key : x.file === key)) ||
      {sku: null, image_id: null, file: String(key), url: null};
    const td = document.createElement("td");
    td.append(picture(im, true), document.createTextNode(" " + label(im)));
    return td;
  }

  const LAYERS = {exact: "same file", phash: "same picture (hash)", visual: "looks the same", keypoints: "same details"};

  function clear(text, isError) {
    $("dedup-groups").replaceChildren();
    const out = $("dedup-summary");
    out.textContent = text || "";
    out.className = isError ? "error" : "";
  }

  function show(report, photo) {
    const box = $("dedup-groups");
    box.replaceChildren();
    const n = report.groups.length;
    clear(photo
      ? (n ? `Already in the catalogue as ${report.groups[0].skus.join(", ")}.` : "Not in the catalogue: this photo is new.")
      : (n ? `${n} group(s) of near-duplicate images` : "No near-duplicates in the catalogue") +
        (report.skipped.length ? `; ${report.skipped.length} image(s) skipped.` : "."));
    report.groups.forEach((g, i) => {
      const el = $("dup-group").content.firstElementChild.cloneNode(true);
      el.querySelector(".dup-title").textContent =
        `Group ${i + 1}: ${g.images.length} images` + (g.skus.length ? `, SKUs ${g.skus.join(", ")}` : "");
      el.querySelector(".dup-images").append(...g.images.map(figure));
      const body = el.querySelector("tbody");
      for (const p of g.pairs) {
        const tr = document.createElement("tr");
        tr.append(side(g, p.a), side(g, p.b));
        for (const v of [LAYERS[p.layer] || p.layer, p.score.toFixed(3)]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        body.append(tr);
      }
      box.append(el);
    });
  }

  function showPhoto(file) {
    if (preview) URL.revokeObjectURL(preview);
    preview = file ? URL.createObjectURL(file) : null;
    const box = $("dedup-photo-preview");
    box.replaceChildren();
    if (file) box.append(figure({sku: null, image_id: null, file: file.name, url: null}));
  }

  $("dedup-run").addEventListener("click", async (ev) => {
    showPhoto(null);
    clear("Looking for near-duplicates…");
    ev.target.disabled = true;
    try {
      show(await skulens.call("GET", "/v1/duplicates"), false);
    } catch (e) {
      clear(e.message, true);
    } finally {
      ev.target.disabled = false;
    }
  });
  $("dedup-photo").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    showPhoto(file);
    const form = new FormData();
    form.append("file", file);
    clear(`Checking ${file.name}…`);
    try {
      show(await skulens.call("POST", "/v1/duplicates", form), true);
    } catch (e) {
      clear(`${file.name}: ${e.message}`, true);
    } finally {
      ev.target.value = "";  // the same file can be checked again
    }
  });
})();
