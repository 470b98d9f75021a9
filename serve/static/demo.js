// The swipe: pointer events on the keyboard become a trace in the API's swipe format, drawn as
// it goes; on release the sidecar's top 4 are shown with their scores and the model that
// answered, beside the ideal path of a candidate (its letters' key centres on this keyboard).
// Tapping a candidate (or typing the word meant) commits the swipe as a labelled swipe.

import { api } from "./api.js";
import { drawOverlay, fitKeyboard, idealPath, keyboardSpec, renderKeyboard } from "./keyboard.js";
import { initPanels, refreshStats, showError, showMessage, showVersion } from "./panels.js";

const MAX_POINTS = 1000; // well under the sidecar's SWIPEFL_MAX_POINTS default (2000)
const board = document.getElementById("keyboard");
const canvas = document.getElementById("trace");
const candidatesEl = document.getElementById("candidates");
const legend = document.getElementById("legend");
const typed = document.getElementById("typed");

let geometry = null; // {width, height, keyHeight} as drawn
let keys = [];
let tracing = null; // the swipe being drawn: {id, t0, rect, points}
let last = null; // the last swipe sent: {swipe, key, committed}
let frame = 0;

function layout() {
  const next = fitKeyboard(board.parentElement.clientWidth);
  if (geometry && next.width === geometry.width && next.keyHeight === geometry.keyHeight) return;
  geometry = next;
  keys = renderKeyboard(board, canvas, geometry);
  drawOverlay(canvas, null, null);
}

function addPoint(ev) {
  const { rect, points, t0 } = tracing;
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const t = Math.max(ev.timeStamp - t0, points.length ? points[points.length - 1].t : 0);
  points.push({
    x: clamp(ev.clientX - rect.left, geometry.width),
    y: clamp(ev.clientY - rect.top, geometry.height),
    t,
  });
}

function redraw() {
  frame = 0;
  if (tracing) drawOverlay(canvas, tracing.points, null);
}

function onDown(ev) {
  if (ev.pointerType === "mouse" && ev.button !== 0) return;
  ev.preventDefault();
  board.setPointerCapture(ev.pointerId);
  tracing = { id: ev.pointerId, t0: ev.timeStamp, rect: board.getBoundingClientRect(), points: [] };
  addPoint(ev);
  redraw();
}

function onMove(ev) {
  if (!tracing || ev.pointerId !== tracing.id) return;
  const coalesced = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
  for (const e of coalesced.length ? coalesced : [ev]) addPoint(e);
  if (!frame) frame = requestAnimationFrame(redraw);
}

function onUp(ev) {
  if (!tracing || ev.pointerId !== tracing.id) return;
  addPoint(ev);
  const points = tracing.points;
  tracing = null;
  if (pathLength(points) < geometry.width / 20 || points.length < 3) {
    drawOverlay(canvas, null, null);
    showMessage("That was a tap: swipe through the letters of a word.");
    return;
  }
  drawOverlay(canvas, points, null);
  predict(points);
}

function onCancel(ev) {
  if (tracing && ev.pointerId === tracing.id) {
    tracing = null;
    drawOverlay(canvas, null, null);
  }
}

function pathLength(points) {
  let sum = 0;
  for (let i = 1; i < points.length; i++) {
    sum += Math.hypot(points[i].x - points[i - 1].x, points[i].y - points[i - 1].y);
  }
  return sum;
}

/** At most MAX_POINTS, evenly spaced along the sequence; coordinates to 0.1 px. */
function compact(points) {
  const step = Math.max(1, points.length / MAX_POINTS);
  const out = [];
  for (let i = 0; i < points.length; i += step) out.push(points[Math.floor(i)]);
  if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]);
  const r = (v) => Math.round(v * 10) / 10;
  return out.map((p) => ({ x: r(p.x), y: r(p.y), t: r(p.t) }));
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function predict(rawPoints) {
  const swipe = { points: compact(rawPoints), keyboard: keyboardSpec(geometry) };
  last = { swipe, key: randomKey(), committed: false, trace: rawPoints };
  candidatesEl.replaceChildren();
  showMessage("Decoding…");
  try {
    const answer = await api.predict(swipe.points, swipe.keyboard, 4, typed.textContent);
    showVersion(answer.model_version);
    showCandidates(answer.candidates);
    refreshStats();
    showMessage(
      answer.candidates.length
        ? "Tap the word you meant to keep this swipe."
        : "No candidates for that swipe."
    );
  } catch (err) {
    showError(err);
  }
}

function showCandidates(candidates) {
  candidatesEl.replaceChildren(
    ...candidates.map((c, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.word = c.word;
      button.className = i === 0 ? "candidate top" : "candidate";
      const word = document.createElement("span");
      word.className = "word";
      word.textContent = c.word;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = c.score.toFixed(2);
      button.append(word, score);
      button.addEventListener("pointerenter", () => showIdeal(c.word));
      button.addEventListener("focus", () => showIdeal(c.word));
      button.addEventListener("click", () => commit(c.word, button));
      return button;
    })
  );
  if (candidates.length) showIdeal(candidates[0].word);
}

function showIdeal(word) {
  if (!last) return;
  drawOverlay(canvas, last.trace, idealPath(keys, word));
  legend.textContent =
    `Blue: your trace. Orange: the ideal path of "${word}", the centres of its letters' keys ` +
    "on this keyboard. A score adds up what the network reads from the trace, how closely the " +
    "trace follows this path, and how common the word is, after the last word typed.";
}

async function commit(word, button) {
  if (!last || last.committed) return;
  last.committed = true;
  const buttons = candidatesEl.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const answer = await api.commit({ ...last.swipe, word }, `${last.key}-${word}`);
    if (button) button.classList.add("chosen");
    showIdeal(word);
    typed.textContent = `${typed.textContent} ${word}`.trim();
    showMessage(`Saved "${word}" as a labelled swipe (#${answer.ids[0]}).`, "ok");
    refreshStats();
  } catch (err) {
    last.committed = false;
    buttons.forEach((b) => (b.disabled = false));
    showError(err);
  }
}

function onOtherWord(ev) {
  ev.preventDefault();
  const input = document.getElementById("other-word-input");
  const word = input.value.trim().toLowerCase();
  if (!/^[a-z]+$/.test(word)) {
    showMessage("Type one word of the letters a-z.", "error");
    return;
  }
  if (!last || last.committed) {
    showMessage("Swipe a word first: the typed word labels the last swipe.", "error");
    return;
  }
  input.value = "";
  commit(word, null);
}

board.addEventListener("pointerdown", onDown);
board.addEventListener("pointermove", onMove);
board.addEventListener("pointerup", onUp);
board.addEventListener("pointercancel", onCancel);
document.getElementById("other-word").addEventListener("submit", onOtherWord);
new ResizeObserver(layout).observe(board.parentElement);
layout();
initPanels();
