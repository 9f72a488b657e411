// The review queue: one answer at a time, accept or reject with a reason,
// keys for both (A accepts; R moves to the reason, Enter then rejects).
// Everything shown is set with textContent; media come from the artifact
// store through the server, which checks the reviewer may see them.
"use strict";

(function () {
  const root = document.getElementById("review");
  if (!root || !window.fetch) return;
  const project = root.dataset.project;
  const csrf = root.dataset.csrf;
  const form = document.getElementById("review-task");
  const itemBox = document.getElementById("review-item");
  const answerBox = document.getElementById("review-answer");
  const reason = document.getElementById("reason");
  const errorBox = document.getElementById("review-error");
  const done = document.getElementById("review-done");
  const timer = document.getElementById("timer");
  const timerWrap = document.getElementById("timer-wrap");
  const reviewed = document.getElementById("reviewed");
  let current = null;
  let busy = false;
  let count = 0;

  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = (res.headers.get("content-type") || "").includes("json") ? await res.json() : null;
    return { ok: res.ok, status: res.status, data };
  }

  function showError(m) {
    errorBox.textContent = m;
    errorBox.hidden = false;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // The player follows what the bounty accepts: audio, images, or a link.
  function media(sha, accept) {
    const url = "/api/v1/artifacts/" + encodeURIComponent(sha);
    const wrap = el("div", { class: "media" });
    const all = (prefix) => accept.length > 0 && accept.every((t) => String(t).startsWith(prefix));
    if (all("audio/")) wrap.append(el("audio", { controls: "", src: url, preload: "metadata" }));
    else if (all("image/")) wrap.append(el("img", { class: "item-image", src: url, alt: "The uploaded image" }));
    wrap.append(el("a", { href: url, target: "_blank", rel: "noopener" }, "Open the file"));
    return wrap;
  }

  function showItem(data) {
    itemBox.replaceChildren();
    if (typeof data.prompt === "string") itemBox.append(el("p", { class: "item-text prompt" }, data.prompt));
    if (typeof data.text === "string") itemBox.append(el("p", { class: "item-text", id: "review-text" }, data.text));
    if (typeof data.image === "string") itemBox.append(el("img", { class: "item-image", src: "/api/v1/artifacts/" + data.image, alt: "The item's image" }));
  }

  function showAnswer(a, schema) {
    answerBox.replaceChildren();
    if (a && typeof a.text === "string") answerBox.append(el("p", { class: "item-text", id: "answer-shown" }, a.text));
    else if (a && typeof a.artifact === "string") answerBox.append(media(a.artifact, (schema && schema.accept) || []));
    else answerBox.append(el("pre", { class: "item-text", id: "answer-shown" }, JSON.stringify(a, null, 2)));
  }

  async function next() {
    current = null;
    const r = await api("POST", "/api/v1/projects/" + project + "/reviews/lease", {});
    if (!r.ok) {
      showError((r.data && r.data.detail) || "The server refused (HTTP " + r.status + ").");
      form.hidden = true;
      return;
    }
    if (!r.data.task) {
      form.hidden = true;
      timerWrap.hidden = true;
      done.hidden = false;
      return;
    }
    current = r.data.task;
    current.expires = Date.parse(current.expires_at);
    form.dataset.lease = String(current.lease_id);
    showItem(current.data || {});
    showAnswer(current.answer, current.schema);
    reason.value = "";
    form.hidden = false;
    timerWrap.hidden = false;
    tick();
  }

  async function decide(verdict) {
    if (!current || busy) return;
    const why = reason.value.trim();
    if (verdict === "reject" && !why) {
      showError("Say why you reject it: the contributor learns from the reason.");
      reason.focus();
      return;
    }
    busy = true;
    try {
      const body = { verdict, idempotency_key: "web-review-" + current.lease_id };
      if (why) body.reason = why;
      const r = await api("POST", "/api/v1/reviews/" + current.lease_id, body);
      if (r.ok || r.status === 409 || r.status === 410) {
        errorBox.hidden = true;
        if (r.ok) {
          count += 1;
          reviewed.textContent = String(count);
          reviewed.parentElement.hidden = false;
        }
        await next();
      } else {
        showError((r.data && r.data.detail) || "The server refused (HTTP " + r.status + ").");
      }
    } catch (e) {
      showError("Could not reach the server; the review was not sent.");
    } finally {
      busy = false;
    }
  }

  // Gives the answer back for someone else; it is not offered here again.
  async function skip() {
    if (!current || busy) return;
    busy = true;
    try {
      const r = await api("DELETE", "/api/v1/reviews/" + current.lease_id);
      if (r.ok || r.status === 409 || r.status === 410) {
        errorBox.hidden = true;
        await next();
      } else {
        showError((r.data && r.data.detail) || "The server refused (HTTP " + r.status + ").");
      }
    } catch (e) {
      showError("Could not reach the server to skip the answer.");
    } finally {
      busy = false;
    }
  }

  function tick() {
    if (!current) return;
    const left = Math.max(0, Math.floor((current.expires - Date.now()) / 1000));
    timer.textContent = "in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    if (left === 0 && !busy) next();
  }

  document.getElementById("accept").addEventListener("click", () => decide("accept"));
  document.getElementById("reject").addEventListener("click", () => decide("reject"));
  document.getElementById("skip").addEventListener("click", skip);
  document.addEventListener("keydown", (e) => {
    if (!current || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target === reason) {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        decide("reject");
      }
      return;
    }
    if (e.key === "a" || e.key === "A") {
      e.preventDefault();
      decide("accept");
    } else if (e.key === "r" || e.key === "R") {
      e.preventDefault();
      reason.focus();
    } else if (e.key === "s" || e.key === "S") {
      e.preventDefault();
      skip();
    }
  });
  setInterval(tick, 1000);
  next();
})();
