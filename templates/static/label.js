// The labeling page without reloads. The server renders the first task as
// a plain form (which works on its own); this script takes it over:
// answers and leases go through the JSON API with the session cookie and
// the page's CSRF token, the next task is leased while the current one is
// shown, and the keyboard does everything: number keys pick a class, Enter
// submits, S skips. Item text is only ever set with textContent.
"use strict";

(function () {
  const root = document.getElementById("work");
  const form = document.getElementById("task");
  if (!root || !form || !window.fetch) return;

  const project = root.dataset.project;
  const csrf = root.dataset.csrf;
  const text = document.getElementById("task-text");
  const leaseInput = document.getElementById("lease-id");
  const timer = document.getElementById("timer");
  const timerWrap = document.getElementById("timer-wrap");
  const errorBox = document.getElementById("work-error");
  const done = document.getElementById("done");
  const answered = document.getElementById("answered");
  const answeredWrap = document.getElementById("answered-wrap");
  const radios = Array.from(form.querySelectorAll('input[name="label"]'));

  let current = {
    lease_id: Number(form.dataset.lease),
    expires_at: Number(form.dataset.expires),
    text: text.textContent,
  };
  const ahead = []; // leased in advance, shown next
  let fetching = null; // the lease request in flight, if any
  let exhausted = false; // the last lease request found nothing
  let busy = false;
  let count = 0;

  text.setAttribute("aria-live", "polite");

  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "x-csrf-token": csrf,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if ((res.headers.get("content-type") || "").includes("json")) {
      data = await res.json();
    }
    return { ok: res.ok, status: res.status, data };
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function problem(r) {
    if (r && r.status === 401) return "Your session has ended: log in again to go on.";
    if (r && r.data && r.data.detail) return r.data.detail;
    return "The server refused (HTTP " + (r ? r.status : "?") + ").";
  }

  function toTask(t) {
    const d = t.data || {};
    return {
      lease_id: t.lease_id,
      expires_at: Date.parse(t.expires_at),
      text: typeof d.text === "string" ? d.text : JSON.stringify(d),
    };
  }

  // Leases one task ahead, unless one is waiting or being fetched.
  function prefetch() {
    if (fetching || exhausted || ahead.length > 0) return fetching;
    fetching = api("POST", "/api/v1/projects/" + project + "/leases", { count: 1 })
      .then((r) => {
        if (!r.ok) {
          showError(problem(r));
          exhausted = r.status === 401 || r.status === 403 || r.status === 404;
        } else if (r.data.tasks.length === 0) {
          exhausted = true;
        } else {
          for (const t of r.data.tasks) ahead.push(toTask(t));
        }
      })
      .catch(() => showError("Could not reach the server to fetch the next task."))
      .finally(() => {
        fetching = null;
      });
    return fetching;
  }

  function show(task) {
    current = task;
    text.textContent = task.text;
    leaseInput.value = String(task.lease_id);
    form.dataset.lease = String(task.lease_id);
    form.dataset.expires = String(task.expires_at);
    for (const r of radios) r.checked = false;
    tick();
  }

  function finish() {
    current = null;
    form.hidden = true;
    timerWrap.hidden = true;
    done.hidden = false;
    done.setAttribute("tabindex", "-1");
    done.focus();
  }

  // Shows the next task (waiting for the one being leased if need be).
  async function next() {
    for (;;) {
      while (ahead.length > 0) {
        const t = ahead.shift();
        if (t.expires_at - Date.now() > 5000) {
          show(t);
          prefetch();
          return;
        }
      }
      if (fetching) {
        await fetching;
      } else if (!exhausted) {
        await prefetch();
      } else {
        finish();
        return;
      }
    }
  }

  async function submit(label) {
    if (busy || !current) return;
    busy = true;
    root.classList.add("busy");
    const lease = current.lease_id;
    try {
      const r = await api("POST", "/api/v1/submissions", {
        lease_id: lease,
        answer: { label },
        idempotency_key: "web-" + lease,
      });
      if (r.ok) {
        clearError();
        count += 1;
        answered.textContent = String(count);
        answeredWrap.hidden = false;
        await next();
      } else if (r.status === 409 || r.status === 410) {
        // The task went away (expired, released, complete): move on.
        showError(problem(r) + " Here is the next task.");
        await next();
      } else {
        showError(problem(r));
      }
    } catch (e) {
      showError("Could not reach the server; the answer was not sent. Press Enter to try again.");
    } finally {
      busy = false;
      root.classList.remove("busy");
    }
  }

  // Skipping leases the next task before giving this one back, so the
  // skipped item cannot come straight back.
  async function skip() {
    if (busy || !current) return;
    busy = true;
    const lease = current.lease_id;
    try {
      if (ahead.length === 0 && !exhausted) await prefetch();
      clearError();
      await next();
      await api("DELETE", "/api/v1/leases/" + lease);
    } catch (e) {
      showError("Could not reach the server to skip the task.");
    } finally {
      busy = false;
    }
  }

  function tick() {
    if (!current) return;
    const left = Math.max(0, Math.floor((current.expires_at - Date.now()) / 1000));
    const m = Math.floor(left / 60);
    const s = left % 60;
    timer.textContent = "in " + m + ":" + String(s).padStart(2, "0");
    timer.classList.toggle("low", left < 60);
    if (left === 0 && !busy) {
      showError("The lease on that task ended before an answer; here is the next one.");
      busy = true;
      next().finally(() => {
        busy = false;
      });
    }
  }

  function chosen() {
    const r = radios.find((x) => x.checked);
    return r ? r.value : null;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (e.submitter && e.submitter.id === "skip") {
      skip();
      return;
    }
    const label = chosen();
    if (label === null) showError("Pick a class first: press its number key.");
    else submit(label);
  });

  document.addEventListener("keydown", (e) => {
    if (!current || e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target;
    if (t.matches && t.matches("textarea, select, input:not([type=radio]), summary")) return;
    const onControl = t.matches && t.matches("a, button");
    const radio = radios.find((r) => r.dataset.key !== "" && r.dataset.key === e.key);
    if (radio) {
      e.preventDefault();
      radio.checked = true;
      radio.focus();
      clearError();
    } else if (e.key === "Enter" && !onControl) {
      e.preventDefault();
      const label = chosen();
      if (label === null) showError("Pick a class first: press its number key.");
      else submit(label);
    } else if (e.key === "s" || e.key === "S") {
      e.preventDefault();
      skip();
    }
  });

  // Leases fetched ahead go back when the page goes away, so their items
  // do not wait for the lease to expire.
  window.addEventListener("pagehide", () => {
    for (const t of ahead.splice(0)) {
      fetch("/api/v1/leases/" + t.lease_id, {
        method: "DELETE",
        keepalive: true,
        credentials: "same-origin",
        headers: { "x-csrf-token": csrf },
      });
    }
  });

  tick();
  setInterval(tick, 1000);
  prefetch();
})();
