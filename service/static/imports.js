"use strict";
// Bulk import on the merchant page: queue a job with POST /v1/import, follow it with GET /v1/jobs/{id}.
(() => {
  const $ = (id) => document.getElementById(id);
  const ENDED = ["done", "failed", "interrupted"];

  function seconds(s) {
    return s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
  }

  function show(job) {
    $("import-job").hidden = false;
    $("import-progress").max = Math.max(job.total, 1);
    $("import-progress").value = job.done;
    const c = job.counts || {};
    const counts = `${c.indexed || 0} indexed, ${c.unchanged || 0} unchanged, ${c.skipped || 0} skipped`;
    let text;
    if (job.state === "queued") text = `Queued: ${job.total} rows wait for the import before them.`;
    else if (job.state === "running") {
      text = `Importing: ${job.done} of ${job.total} rows (${counts})`;
      if (job.rate) text += ` · ${job.rate.toFixed(2)} rows/s`;
      if (job.eta_s != null) text += ` · about ${seconds(job.eta_s)} left`;
    } else if (job.state === "done") {
      text = `Imported ${job.total} rows: ${counts}` +
        (job.finished_at && job.started_at ? ` in ${seconds(job.finished_at - job.started_at)}.` : ".");
    } else text = `Import ${job.state}: ${job.error || "no reason given"} (${counts}).`;
    if (job.note) text += ` (${job.note})`;
    const summary = $("import-summary");
    summary.textContent = text;
    summary.className = job.state === "failed" || job.state === "interrupted" ? "error" : "";
    const table = $("import-errors");
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const e of job.errors || []) {
      const tr = document.createElement("tr");
      for (const value of [e.item, e.reason]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      body.append(tr);
    }
    table.hidden = !(job.errors || []).length;
  }

  async function follow(url) {
    for (;;) {
      const job = await skulens.call("GET", url);
      show(job);
      if (ENDED.includes(job.state)) {
        document.dispatchEvent(new Event("skulens:catalogue-changed"));
        return job;
      }
      await new Promise((done) => setTimeout(done, 1000));
    }
  }

  $("import-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const form = new FormData();
    form.append("manifest", f.elements.manifest.files[0]);
    for (const file of f.elements["import-images"].files) form.append("file", file);
    const button = f.querySelector("button");
    button.disabled = true;
    $("import-summary").textContent = "Uploading…";
    $("import-summary").className = "";
    $("import-job").hidden = false;
    try {
      const job = await skulens.call("POST", "/v1/import", form);
      f.reset();
      await follow(job.url);
    } catch (e) {
      $("import-summary").textContent = e.message;
      $("import-summary").className = "error";
    } finally {
      button.disabled = false;
    }
  });
})();
