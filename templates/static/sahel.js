// Progressive enhancement for every page; each part does nothing when its
// elements are absent. Pages work without this file.
"use strict";

// Token amounts as integer micro-units (BigInt), never floats, the same
// rule as the server's `Micros`.
const MICROS = 1000000n;

function parseMicros(text) {
  const m = /^\s*(\d*)(?:\.(\d{0,6}))?\s*$/.exec(text || "");
  if (!m || (m[1] === "" && (m[2] === undefined || m[2] === ""))) return null;
  const whole = BigInt(m[1] || "0");
  const frac = BigInt(((m[2] || "") + "000000").slice(0, 6));
  return whole * MICROS + frac;
}

function formatMicros(v) {
  const neg = v < 0n;
  const a = neg ? -v : v;
  const frac = (a % MICROS).toString().padStart(6, "0");
  return (neg ? "-" : "") + (a / MICROS).toString() + "." + frac;
}

// The bounty form: cost = overlap x items x reward, plus for reviewed
// types a paid review of every answer an item may get (2 x overlap - 1),
// live, as the server computes it (projects::cost). The budget follows
// the cost until the buyer types their own.
function liveCost() {
  const form = document.getElementById("new-project");
  if (!form) return;
  const overlap = form.querySelector("#overlap");
  const items = form.querySelector("#items");
  const reward = form.querySelector("#reward");
  const budget = form.querySelector("#budget");
  const taskType = form.querySelector("#task_type");
  const perAnswer = form.querySelector("#reviews_per_answer");
  const perReview = form.querySelector("#review_reward");
  const reviewsNote = document.getElementById("cost-reviews");
  function reviewCost(o, n) {
    const reviewed = ["free_text", "file_collection"].includes(taskType.value);
    const rr = perReview.value.trim() === "" ? 0n : parseMicros(perReview.value);
    const k = /^\d+$/.test(perAnswer.value.trim()) ? BigInt(perAnswer.value.trim()) : 1n;
    reviewsNote.hidden = !reviewed || !rr;
    if (!reviewed || !rr) return 0n;
    const maxAnswers = o * 2n - 1n > 1n ? o * 2n - 1n : 1n;
    return rr * (k > 1n ? k : 1n) * maxAnswers * n;
  }
  const out = document.getElementById("cost");
  const note = document.getElementById("cost-note");
  let budgetTouched = false;
  budget.addEventListener("input", () => { budgetTouched = true; update(); });
  function update() {
    const o = /^\d+$/.test(overlap.value.trim()) ? BigInt(overlap.value.trim()) : null;
    const n = /^\d+$/.test(items.value.trim()) ? BigInt(items.value.trim()) : null;
    const r = parseMicros(reward.value);
    if (o === null || n === null || r === null) {
      out.textContent = "?";
      note.textContent = "(fill in overlap, items and reward)";
      return;
    }
    const cost = o * n * r + reviewCost(o, n);
    out.textContent = formatMicros(cost);
    if (!budgetTouched) budget.value = formatMicros(cost);
    const b = parseMicros(budget.value);
    if (b === null) {
      note.textContent = "(the budget is not an amount)";
    } else if (b < cost) {
      note.textContent = "(the budget is " + formatMicros(cost - b) + " short)";
    } else {
      note.textContent = "(the budget covers it)";
    }
  }
  for (const el of [overlap, items, reward, perAnswer, perReview]) el.addEventListener("input", update);
  taskType.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", liveCost);
