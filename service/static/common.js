"use strict";
// Shared by both pages: the API key (kept in this browser only) and fetch with errors shown.
const skulens = (() => {
  const keyInput = () => document.getElementById("key");
  const saved = localStorage.getItem("skulens-key") || "";
  document.addEventListener("DOMContentLoaded", () => {
    const k = keyInput();
    if (!k) return;
    k.value = saved;
    k.addEventListener("change", () => localStorage.setItem("skulens-key", k.value.trim()));
  });
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const k = (keyInput() && keyInput().value.trim()) || saved;
    if (k) h["Authorization"] = "Bearer " + k;
    return h;
  }
  async function call(method, url, body, json) {
    const opts = {method, headers: headers(json ? {"Content-Type": "application/json"} : {})};
    if (body !== undefined) opts.body = json ? JSON.stringify(body) : body;
    const res = await fetch(url, opts);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => ({detail: res.statusText}));
    if (!res.ok) {
      const err = new Error(data.detail || ("HTTP " + res.status));
      err.status = res.status;
      err.kind = data.error;
      throw err;
    }
    return data;
  }
  // Images need the key too when one is set: fetch them and use object URLs.
  async function imageSrc(img, url) {
    if (!url) return;
    const res = await fetch(url, {headers: headers()});
    if (res.ok) img.src = URL.createObjectURL(await res.blob());
  }
  function status(text, isError) {
    const el = document.getElementById("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }
  return {call, imageSrc, status};
})();
