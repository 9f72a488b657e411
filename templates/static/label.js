// The labeling page without reloads. The server renders the first task (a
// plain form for classification, which works on its own); this script
// takes it over: answers and leases go through the JSON API with the
// session cookie and the page's CSRF token, the next task is leased while
// the current one is shown, and the keyboard does everything it can:
// number keys pick, Enter submits, S skips. One widget per task type turns
// a task into controls and the controls into an answer (the shapes are in
// docs/task-types.md). Item text is only ever set with textContent.
"use strict";

(function () {
  const root = document.getElementById("work");
  const form = document.getElementById("task");
  if (!root || !form || !window.fetch) return;

  const project = root.dataset.project;
  const csrf = root.dataset.csrf;
  const taskType = root.dataset.type || "classification";
  const schema = JSON.parse(root.dataset.schema || "{}");
  const itemBox = document.getElementById("item");
  const leaseInput = document.getElementById("lease-id");
  const timer = document.getElementById("timer");
  const timerWrap = document.getElementById("timer-wrap");
  const errorBox = document.getElementById("work-error");
  const done = document.getElementById("done");
  const answered = document.getElementById("answered");
  const answeredWrap = document.getElementById("answered-wrap");

  const ahead = []; // leased in advance, shown next
  let fetching = null; // the lease request in flight, if any
  let exhausted = false; // the last lease request found nothing
  let busy = false;
  let count = 0;

  async function api(method, path, body, contentType) {
    const raw = contentType !== undefined;
    const res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: {
        "content-type": raw ? contentType || "application/octet-stream" : "application/json",
        accept: "application/json",
        "x-csrf-token": csrf,
      },
      body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
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

  // On bounties that show it: the known answer of a check question just
  // answered.
  const goldBox = document.getElementById("gold-feedback");
  function showGoldFeedback(f) {
    if (!goldBox) return;
    if (!f) {
      goldBox.hidden = true;
      return;
    }
    const a = f.answer || {};
    const known = a.label || a.choice || (Array.isArray(a.labels) ? a.labels.join(", ") : JSON.stringify(a));
    goldBox.textContent = f.correct
      ? "That was a check question, and you got it right."
      : "That was a check question; the expected answer was: " + known + ".";
    goldBox.hidden = false;
  }

  function problem(r) {
    if (r && r.status === 401) return "Your session has ended: log in again to go on.";
    if (r && r.data && r.data.detail) return r.data.detail;
    return "The server refused (HTTP " + (r ? r.status : "?") + ").";
  }

  // ------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  function keyOf(i) {
    return i < 9 ? String(i + 1) : i === 9 ? "0" : "";
  }

  function strings(v) {
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  }

  function artifactUrl(sha) {
    return "/api/v1/artifacts/" + encodeURIComponent(sha);
  }

  // The item's text (or its fields), shown as text, never as HTML.
  function itemText(data) {
    return el("p", { id: "task-text", class: "item-text", text: typeof data.text === "string" ? data.text : JSON.stringify(data) });
  }

  // Suggestions imported with the item (Label Studio predictions).
  function hintsOf(data) {
    if (!Array.isArray(data.hints)) return null;
    const shown = [];
    for (const result of data.hints) {
      for (const region of Array.isArray(result) ? result : []) {
        const v = region && region.value;
        if (v && Array.isArray(v.choices)) shown.push(v.choices.join(", "));
        else if (v && Array.isArray(v.labels)) shown.push(v.labels.join(", ") + (v.text ? ": " + v.text : ""));
      }
    }
    return shown.length ? el("p", { class: "hint muted", text: "Suggested: " + shown.join("; ") }) : null;
  }

  // A legend of labels picked with number keys; `active` marks the one in use.
  function labelKeys(labels, active) {
    const box = el("div", { class: "choices label-keys", role: "radiogroup", "aria-label": "Label" });
    labels.forEach((l, i) => {
      const b = el("button", { type: "button", class: "choice" + (i === active ? " active" : ""), "data-index": String(i), "aria-pressed": String(i === active) });
      const k = keyOf(i);
      if (k) b.append(el("kbd", { text: k }), " ");
      b.append(el("span", { text: l }));
      box.append(b);
    });
    return box;
  }

  function markActive(box, active) {
    for (const b of box.querySelectorAll("button")) {
      const on = Number(b.dataset.index) === active;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", String(on));
    }
  }

  function digitIndex(e, n) {
    if (!/^[0-9]$/.test(e.key)) return -1;
    const i = e.key === "0" ? 9 : Number(e.key) - 1;
    return i < n ? i : -1;
  }

  // ------------------------------------------------------------ widgets
  // Each widget: render(data) fills the item box; answer() returns
  // {value} or {error}; key(e) returns true when it used the key.

  // One class, from the radios the server rendered (the page works
  // without script for this type).
  function classification() {
    const radios = Array.from(form.querySelectorAll('input[name="label"]'));
    return {
      render(data) {
        document.getElementById("task-text").textContent = typeof data.text === "string" ? data.text : JSON.stringify(data);
        for (const r of radios) r.checked = false;
      },
      answer() {
        const r = radios.find((x) => x.checked);
        return r ? { value: { label: r.value } } : { error: "Pick a class first: press its number key." };
      },
      key(e) {
        const radio = radios.find((r) => r.dataset.key !== "" && r.dataset.key === e.key);
        if (!radio) return false;
        radio.checked = true;
        radio.focus();
        return true;
      },
    };
  }

  // Any number of classes: number keys toggle them.
  function multiLabel() {
    const classes = strings(schema.classes);
    const min = Number.isInteger(schema.min) ? schema.min : 0;
    const max = Number.isInteger(schema.max) ? schema.max : classes.length;
    let boxes = [];
    return {
      render(data) {
        itemBox.replaceChildren();
        if (typeof data.image === "string") itemBox.append(el("img", { class: "item-image", src: artifactUrl(data.image), alt: "The item's image" }));
        if (typeof data.text === "string") itemBox.append(itemText(data));
        const set = el("fieldset", { class: "choices" }, el("legend", { text: "Pick every class that applies (number keys toggle), then press Enter" }));
        boxes = classes.map((c, i) => {
          const input = el("input", { type: "checkbox", id: "class-" + (i + 1), value: c });
          const k = keyOf(i);
          set.append(el("label", { class: "choice", for: "class-" + (i + 1) }, input, k ? el("kbd", { text: k }) : null, " ", el("span", { text: c })));
          return input;
        });
        itemBox.append(set, hintsOf(data) || "");
      },
      answer() {
        const labels = boxes.filter((b) => b.checked).map((b) => b.value).sort();
        if (labels.length < min || labels.length > max) return { error: "Pick from " + min + " to " + max + " classes." };
        return { value: { labels } };
      },
      key(e) {
        const i = digitIndex(e, boxes.length);
        if (i < 0) return false;
        boxes[i].checked = !boxes[i].checked;
        boxes[i].focus();
        return true;
      },
    };
  }

  // Which of two responses is better: keys 1/A, 2/B, 3/T.
  function pairwise() {
    const tie = schema.allow_tie !== false;
    let choice = null;
    let buttons = [];
    const options = tie ? ["a", "b", "tie"] : ["a", "b"];
    function pick(o) {
      choice = o;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.choice === o));
    }
    return {
      render(data) {
        choice = null;
        itemBox.replaceChildren(
          el("p", { class: "item-text prompt", id: "task-text", text: String(data.prompt || "") }),
          el("div", { class: "pair" },
            el("section", { class: "response", "aria-label": "Response A" }, el("h3", { text: "A" }), el("p", { class: "item-text", id: "response-a", text: String(data.response_a || "") })),
            el("section", { class: "response", "aria-label": "Response B" }, el("h3", { text: "B" }), el("p", { class: "item-text", id: "response-b", text: String(data.response_b || "") })))
        );
        const row = el("div", { class: "choices" });
        buttons = options.map((o, i) => {
          const b = el("button", { type: "button", class: "choice", "data-choice": o, "aria-pressed": "false" }, el("kbd", { text: String(i + 1) }), " ", el("span", { text: o === "tie" ? "Tie" : o.toUpperCase() + " is better" }));
          b.addEventListener("click", () => pick(o));
          row.append(b);
          return b;
        });
        itemBox.append(row);
      },
      answer() {
        return choice ? { value: { choice } } : { error: "Pick A, B" + (tie ? " or tie" : "") + " first: press 1, 2" + (tie ? " or 3" : "") + "." };
      },
      key(e) {
        const k = e.key.toLowerCase();
        const o = k === "1" || k === "a" ? "a" : k === "2" || k === "b" ? "b" : (k === "3" || k === "t") && tie ? "tie" : null;
        if (!o) return false;
        pick(o);
        return true;
      },
    };
  }

  // Writing within length bounds, counted live; Ctrl+Enter submits.
  function freeText() {
    const min = Number.isInteger(schema.min_chars) ? schema.min_chars : 1;
    const max = Number.isInteger(schema.max_chars) ? schema.max_chars : null;
    let area = null;
    let counter = null;
    function update() {
      const n = Array.from(area.value).length;
      counter.textContent = n + (max ? " / " + max : "") + " characters (at least " + min + ")";
      counter.classList.toggle("bad", n < min || (max !== null && n > max));
    }
    return {
      textEntry: true,
      render(data) {
        area = el("textarea", { id: "answer-text", rows: "6", "aria-describedby": "answer-count" });
        counter = el("p", { id: "answer-count", class: "muted", "aria-live": "polite" });
        area.addEventListener("input", update);
        itemBox.replaceChildren(itemText(data), el("label", { for: "answer-text", text: "Your text (Ctrl+Enter sends)" }), area, counter);
        update();
        area.focus();
      },
      answer() {
        const n = Array.from(area.value).length;
        if (n < min || (max !== null && n > max)) return { error: "Write from " + min + " to " + (max || "any number of") + " characters (now " + n + ")." };
        return { value: { text: area.value } };
      },
      key() {
        return false;
      },
    };
  }

  // Labeled character ranges: select text with the mouse, press the
  // label's number; click a span to remove it. Offsets count Unicode
  // scalar values, as the server does, not the UTF-16 units of the DOM.
  function textSpans() {
    const labels = strings(schema.labels);
    let text = "";
    let spans = [];
    let view = null;
    let legend = null;
    let active = 0;
    function draw() {
      const chars = Array.from(text);
      view.replaceChildren();
      let at = 0;
      for (const [i, s] of spans.entries()) {
        if (s.start > at) view.append(document.createTextNode(chars.slice(at, s.start).join("")));
        const m = el("mark", { class: "span l" + (labels.indexOf(s.label) % 6), "data-index": String(i), title: s.label + " (click to remove)" }, chars.slice(s.start, s.end).join(""), el("small", { text: s.label }));
        m.addEventListener("click", () => {
          spans.splice(i, 1);
          draw();
        });
        view.append(m);
        at = s.end;
      }
      if (at < chars.length) view.append(document.createTextNode(chars.slice(at).join("")));
    }
    // The UTF-16 offset of a DOM position inside the view, counting only
    // the item's own text (not the labels drawn on the marks).
    function offsetOf(node, offset) {
      let u = 0;
      const walker = document.createTreeWalker(view, NodeFilter.SHOW_TEXT, {
        acceptNode: (n) => (n.parentElement && n.parentElement.tagName === "SMALL" ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
      });
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n === node) return u + offset;
        u += n.data.length;
      }
      if (node === view) return offset === 0 ? 0 : text.length;
      return null;
    }
    function addSelected(label) {
      const sel = window.getSelection();
      if (!sel || sel.rangeCount === 0 || sel.isCollapsed) {
        showError("Select some text first, then press the label's number.");
        return;
      }
      const r = sel.getRangeAt(0);
      const a = offsetOf(r.startContainer, r.startOffset);
      const b = offsetOf(r.endContainer, r.endOffset);
      if (a === null || b === null || a >= b) return;
      const start = Array.from(text.slice(0, a)).length;
      const end = Array.from(text.slice(0, b)).length;
      if (spans.some((s) => s.start < end && start < s.end)) {
        showError("Spans may not overlap: remove the other span first (click it).");
        return;
      }
      spans.push({ start, end, label });
      spans.sort((x, y) => x.start - y.start);
      sel.removeAllRanges();
      clearError();
      draw();
    }
    return {
      render(data) {
        text = typeof data.text === "string" ? data.text : "";
        spans = [];
        view = el("p", { id: "task-text", class: "item-text spans" });
        legend = labelKeys(labels, -1);
        for (const b of legend.querySelectorAll("button")) {
          b.addEventListener("mousedown", (e) => e.preventDefault()); // keep the selection
          b.addEventListener("click", () => addSelected(labels[Number(b.dataset.index)]));
        }
        itemBox.replaceChildren(
          el("p", { class: "muted", text: "Select text with the mouse, then press the label's number (or click the label). Click a span to remove it." }),
          view,
          legend,
          hintsOf(data) || ""
        );
        draw();
      },
      answer() {
        return { value: { spans: spans.map((s) => ({ start: s.start, end: s.end, label: s.label })) } };
      },
      key(e) {
        const i = digitIndex(e, labels.length);
        if (i < 0) return false;
        active = i;
        addSelected(labels[i]);
        return true;
      },
      spans: () => spans,
    };
  }

  // Boxes on an image: drag on the image to draw, drag a box to move it,
  // drag its corner to resize, number keys set the label (of the selected
  // box, and of the next one), Delete removes the selected box.
  // Coordinates are the image's own pixels, whatever its size on screen.
  function boundingBoxes() {
    const labels = strings(schema.labels);
    const NS = "http://www.w3.org/2000/svg";
    let boxes = [];
    let selected = -1;
    let active = 0;
    let svg = null;
    let legend = null;
    let size = { w: 0, h: 0 };
    let drag = null;
    function svgEl(tag, attrs) {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      return e;
    }
    function point(e) {
      const m = svg.getScreenCTM().inverse();
      const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(m);
      return { x: Math.min(size.w, Math.max(0, p.x)), y: Math.min(size.h, Math.max(0, p.y)) };
    }
    function draw() {
      svg.replaceChildren();
      boxes.forEach((b, i) => {
        const g = svgEl("g", { class: "box l" + (labels.indexOf(b.label) % 6) + (i === selected ? " selected" : ""), "data-index": String(i) });
        const r = svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, "data-part": "body" });
        const t = svgEl("text", { x: b.x + 3, y: b.y + 14 });
        t.textContent = b.label;
        const handle = svgEl("rect", { x: b.x + b.w - 6, y: b.y + b.h - 6, width: 12, height: 12, class: "handle", "data-part": "corner" });
        g.append(r, t, handle);
        svg.append(g);
      });
      markActive(legend, active);
    }
    function onDown(e) {
      e.preventDefault();
      const p = point(e);
      const g = e.target.closest && e.target.closest("g.box");
      if (g) {
        selected = Number(g.dataset.index);
        const b = boxes[selected];
        drag = { mode: e.target.dataset.part === "corner" ? "resize" : "move", from: p, orig: { ...b } };
      } else {
        boxes.push({ x: p.x, y: p.y, w: 0, h: 0, label: labels[active] });
        selected = boxes.length - 1;
        drag = { mode: "draw", from: p };
      }
      svg.setPointerCapture && e.pointerId !== undefined && svg.setPointerCapture(e.pointerId);
      draw();
    }
    function onMove(e) {
      if (!drag) return;
      const p = point(e);
      const b = boxes[selected];
      if (drag.mode === "draw") {
        b.x = Math.min(drag.from.x, p.x);
        b.y = Math.min(drag.from.y, p.y);
        b.w = Math.abs(p.x - drag.from.x);
        b.h = Math.abs(p.y - drag.from.y);
      } else if (drag.mode === "move") {
        b.x = Math.min(size.w - b.w, Math.max(0, drag.orig.x + p.x - drag.from.x));
        b.y = Math.min(size.h - b.h, Math.max(0, drag.orig.y + p.y - drag.from.y));
      } else {
        b.w = Math.max(1, p.x - b.x);
        b.h = Math.max(1, p.y - b.y);
      }
      draw();
    }
    function onUp() {
      if (!drag) return;
      const b = boxes[selected];
      // A click without a drag draws nothing.
      if (drag.mode === "draw" && (b.w < 2 || b.h < 2)) {
        boxes.splice(selected, 1);
        selected = -1;
      }
      drag = null;
      draw();
    }
    return {
      render(data) {
        boxes = [];
        selected = -1;
        size = { w: Number(data.width) || 0, h: Number(data.height) || 0 };
        const img = el("img", { class: "box-image", src: typeof data.image === "string" ? artifactUrl(data.image) : "", alt: "The image to label", draggable: "false" });
        svg = svgEl("svg", { class: "box-layer", id: "box-layer", viewBox: "0 0 " + size.w + " " + size.h, preserveAspectRatio: "none", role: "img", "aria-label": "Boxes drawn on the image" });
        img.addEventListener("load", () => {
          if (!size.w || !size.h) {
            size = { w: img.naturalWidth, h: img.naturalHeight };
            svg.setAttribute("viewBox", "0 0 " + size.w + " " + size.h);
          }
        });
        svg.addEventListener("pointerdown", onDown);
        svg.addEventListener("pointermove", onMove);
        svg.addEventListener("pointerup", onUp);
        svg.addEventListener("pointercancel", onUp);
        legend = labelKeys(labels, active);
        for (const b of legend.querySelectorAll("button")) {
          b.addEventListener("click", () => setLabel(Number(b.dataset.index)));
        }
        itemBox.replaceChildren(
          el("p", { class: "muted", text: "Drag on the image to draw a box; drag a box to move it, its corner to resize it. Number keys pick the label, Delete removes the selected box." }),
          el("div", { class: "box-stage" }, img, svg),
          legend
        );
        draw();
      },
      answer() {
        const r = (v) => Math.round(v);
        return { value: { boxes: boxes.map((b) => ({ x: r(b.x), y: r(b.y), w: Math.max(1, r(b.w)), h: Math.max(1, r(b.h)), label: b.label })) } };
      },
      key(e) {
        if ((e.key === "Delete" || e.key === "Backspace") && selected >= 0) {
          boxes.splice(selected, 1);
          selected = -1;
          draw();
          return true;
        }
        const i = digitIndex(e, labels.length);
        if (i < 0) return false;
        setLabel(i);
        return true;
      },
    };
    function setLabel(i) {
      active = i;
      if (selected >= 0) boxes[selected].label = labels[i];
      draw();
    }
  }

  // A file: chosen from the disk or recorded here, uploaded to object
  // storage; the answer names it by its SHA-256.
  function fileCollection() {
    const accept = strings(schema.accept);
    let uploaded = null;
    let status = null;
    let recorder = null;
    async function upload(blob) {
      uploaded = null;
      status.textContent = "Uploading…";
      try {
        const r = await api("POST", "/api/v1/artifacts?project=" + project, blob, blob.type || "application/octet-stream");
        if (!r.ok) {
          status.textContent = "";
          showError(problem(r));
          return;
        }
        uploaded = r.data.sha256 || r.data.hash;
        clearError();
        status.textContent = "Uploaded (" + (r.data.media_type || blob.type) + ", " + (r.data.size || blob.size) + " bytes). Press Enter to send.";
      } catch (e) {
        status.textContent = "";
        showError("Could not reach the server to upload the file.");
      }
    }
    return {
      render(data) {
        uploaded = null;
        const input = el("input", { type: "file", id: "answer-file", accept: accept.join(",") || null });
        input.addEventListener("change", () => {
          if (input.files && input.files[0]) upload(input.files[0]);
        });
        status = el("p", { id: "upload-status", class: "muted", "aria-live": "polite" });
        const record = el("button", { type: "button", id: "record", class: "secondary", text: "Record audio" });
        record.addEventListener("click", async () => {
          if (recorder) {
            recorder.stop();
            return;
          }
          if (!navigator.mediaDevices || !window.MediaRecorder) {
            showError("This browser cannot record: choose a file instead.");
            return;
          }
          try {
            const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
            const chunks = [];
            recorder = new MediaRecorder(stream);
            recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
            recorder.addEventListener("stop", () => {
              for (const t of stream.getTracks()) t.stop();
              const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
              recorder = null;
              record.textContent = "Record audio";
              upload(blob);
            });
            recorder.start();
            record.textContent = "Stop recording";
            status.textContent = "Recording…";
          } catch (e) {
            showError("The microphone is not available: " + e.message);
          }
        });
        itemBox.replaceChildren(
          itemText(data),
          el("label", { for: "answer-file", text: "Your file" + (accept.length ? " (" + accept.join(", ") + ")" : "") }),
          input,
          record,
          status
        );
      },
      answer() {
        return uploaded ? { value: { artifact: uploaded } } : { error: "Upload or record a file first." };
      },
      key() {
        return false;
      },
    };
  }

  const widgets = {
    classification,
    multi_label: multiLabel,
    pairwise,
    free_text: freeText,
    text_spans: textSpans,
    bounding_boxes: boundingBoxes,
    file_collection: fileCollection,
  };
  const widget = (widgets[taskType] || classification)();

  function toTask(t) {
    return { lease_id: t.lease_id, expires_at: Date.parse(t.expires_at), data: t.data || {} };
  }

  let current = {
    lease_id: Number(form.dataset.lease),
    expires_at: Number(form.dataset.expires),
    data: JSON.parse(form.dataset.item || "{}"),
  };
  if (taskType !== "classification") widget.render(current.data);
  window.sahelWidget = widget; // for the browser tests

  // Leases one task ahead, unless one is waiting or being fetched.
  function prefetch() {
    if (fetching || exhausted || ahead.length > 0) return fetching;
    fetching = api("POST", "/api/v1/projects/" + project + "/leases", { count: 1 })
      .then((r) => {
        if (!r.ok) {
          showError(problem(r));
          // 409: paused or closed by the buyer; asking again would not help.
          exhausted = r.status === 401 || r.status === 403 || r.status === 404 || r.status === 409;
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
    leaseInput.value = String(task.lease_id);
    form.dataset.lease = String(task.lease_id);
    form.dataset.expires = String(task.expires_at);
    widget.render(task.data);
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

  async function submit() {
    if (busy || !current) return;
    const a = widget.answer();
    if (a.error) {
      showError(a.error);
      return;
    }
    busy = true;
    root.classList.add("busy");
    const lease = current.lease_id;
    try {
      const r = await api("POST", "/api/v1/submissions", {
        lease_id: lease,
        answer: a.value,
        idempotency_key: "web-" + lease,
      });
      if (r.ok) {
        clearError();
        showGoldFeedback(r.data.gold_feedback);
        // An answer can open new work (an exam passed, a slot reopened):
        // an empty lease before it is no proof that nothing is left.
        if (ahead.length === 0 && !fetching) exhausted = false;
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

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (e.submitter && e.submitter.id === "skip") skip();
    else submit();
  });

  document.addEventListener("keydown", (e) => {
    if (!current || e.altKey || e.metaKey) return;
    const t = e.target;
    const typing = t.matches && t.matches("textarea, select, input:not([type=radio]):not([type=checkbox]), summary");
    if (typing) {
      // In the text area, Ctrl+Enter sends; every other key is text.
      if (widget.textEntry && e.key === "Enter" && e.ctrlKey) {
        e.preventDefault();
        submit();
      }
      return;
    }
    if (e.ctrlKey) return;
    const onControl = t.matches && t.matches("a, button");
    if (widget.key(e)) {
      e.preventDefault();
      clearError();
    } else if (e.key === "Enter" && !onControl) {
      e.preventDefault();
      submit();
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
