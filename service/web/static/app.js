// Callboard pages: live task updates over server-sent events, previews, confirmations.
// Everything here is progressive: without JS the pages show the state at load time.
"use strict";

const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED"];
const ACTIVE = ["PENDING", "THROTTLED", "RUNNING"];

function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }

function refreshSections() {
  // Re-fetch this page and swap the sections marked data-refresh (timeline, deliveries).
  const sections = document.querySelectorAll("[data-refresh]");
  if (!sections.length) return;
  fetch(window.location.href, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.text() : null))
    .then((html) => {
      if (!html) return;
      const doc = new DOMParser().parseFromString(html, "text/html");
      sections.forEach((el) => {
        const fresh = doc.querySelector('[data-refresh="' + el.dataset.refresh + '"]');
        if (fresh) el.replaceWith(document.importNode(fresh, true));
      });
    })
    .catch(() => {});
}

let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refreshSections(); }, 1200);
}

function showOutput(panel, task) {
  const box = field(panel, "output");
  if (!box || box.querySelector("video") || !task.output || !task.output.length) return;
  task.output.forEach((url) => {
    const video = document.createElement("video");
    video.controls = true;
    video.playsInline = true;
    video.preload = "metadata";
    video.src = url;
    video.setAttribute("aria-label", "Result video");
    const p = document.createElement("p");
    const a = document.createElement("a");
    a.className = "button";
    a.href = url;
    a.download = "";
    a.textContent = "Download result";
    p.appendChild(a);
    box.appendChild(video);
    box.appendChild(p);
  });
}

function applyTask(panel, task) {
  panel.dataset.status = task.status;
  const badge = field(panel, "status");
  if (badge) {
    badge.textContent = task.status;
    badge.className = "badge badge-" + task.status.toLowerCase();
  }
  const updated = field(panel, "updated");
  if (updated && task.updatedAt) updated.textContent = "updated " + task.updatedAt;
  const wrap = field(panel, "progress-wrap");
  const progress = field(panel, "progress");
  const text = field(panel, "progress-text");
  const value = task.status === "RUNNING" ? Math.round((task.progress || 0) * 100) : 0;
  if (wrap) wrap.hidden = ACTIVE.indexOf(task.status) < 0;
  if (progress) { progress.value = value; progress.textContent = value + "%"; }
  if (text) text.textContent = value + "%";
  const failure = field(panel, "failure");
  if (failure) {
    failure.hidden = task.status !== "FAILED";
    if (task.status === "FAILED") {
      failure.textContent = (task.failure || "The task failed.") + (task.failureCode ? " (" + task.failureCode + ")" : "");
    }
  }
  if (task.status === "SUCCEEDED") showOutput(panel, task);
  if (TERMINAL.indexOf(task.status) >= 0) {
    const cancel = field(panel, "cancel");
    if (cancel) cancel.remove();
  }
}

function watchTask(panel) {
  const id = panel.dataset.taskStream;
  if (!window.EventSource || TERMINAL.indexOf(panel.dataset.status) >= 0) return;
  const source = new EventSource("/v1/tasks/" + encodeURIComponent(id) + "/stream");
  source.onmessage = (event) => {
    let task;
    try { task = JSON.parse(event.data); } catch (e) { return; }
    applyTask(panel, task);
    scheduleRefresh();
    if (TERMINAL.indexOf(task.status) >= 0) source.close();  // the server ends the stream too
  };
  source.onerror = () => {
    if (TERMINAL.indexOf(panel.dataset.status) >= 0) source.close();
  };
}

function watchList(wrap) {
  // A task list with unfinished tasks re-reads itself every few seconds (one request,
  // not one stream per row) until every task on it has finished.
  const tick = () => {
    fetch(window.location.href, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.querySelector("[data-live-list]");
        if (!fresh) return;
        wrap.innerHTML = fresh.innerHTML;
        wrap.dataset.liveList = fresh.dataset.liveList;
        if (fresh.dataset.liveList === "yes") setTimeout(tick, 3000);
      })
      .catch(() => setTimeout(tick, 10000));
  };
  setTimeout(tick, 3000);
}

function preview(input) {
  const box = document.getElementById(input.dataset.preview);
  if (!box) return;
  box.textContent = "";
  let url = null;
  let type = "";
  if (input.type === "file") {
    const file = input.files && input.files[0];
    if (!file) return;
    url = URL.createObjectURL(file);
    type = file.type || "";
  } else if (input.value) {
    url = input.dataset.exampleBase + encodeURIComponent(input.value);
    type = /\.(mp4|mov|webm)$/i.test(input.value) ? "video/" : "image/";
  }
  if (!url) return;
  let el;
  if (type.indexOf("video/") === 0) {
    el = document.createElement("video");
    el.controls = true;
    el.muted = true;
    el.preload = "metadata";
  } else {
    el = document.createElement("img");
    el.alt = "Preview of the chosen " + (input.id.indexOf("reference") === 0 ? "driving clip" : "character");
  }
  el.src = url;
  box.appendChild(el);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-task-stream]").forEach(watchTask);
  document.querySelectorAll('[data-live-list="yes"]').forEach(watchList);
  document.querySelectorAll("[data-preview]").forEach((input) => {
    input.addEventListener("change", () => preview(input));
    if (input.tagName === "SELECT" && input.value) preview(input);
  });
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
