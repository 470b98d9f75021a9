// Everything around the keyboard: the message line, the token prompt, the device's stats,
// personalization (start, progress, accepted or not) and personal words.

import { api, getToken, setToken } from "./api.js";

const STATS_EVERY_MS = 10000;
const JOB_POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

export function showMessage(text, kind = "") {
  const el = $("message");
  el.textContent = text;
  el.className = kind;
}

/** An ApiError (or anything thrown) as a message; a refused token also opens the prompt. */
export function showError(err) {
  const text = err && err.explain ? err.explain() : String(err);
  showMessage(text, "error");
  if (err && err.code === "UNAUTHORIZED") askForToken(text);
  return text;
}

export function versionText(version) {
  if (!version) return "no model loaded";
  const name = version.base ? "shipped base" : `release ${version.run_id}/${version.round}`;
  return version.personalized ? `${name} + personalized` : name;
}

export function showVersion(version) {
  $("model-version").textContent = versionText(version);
}

function askForToken(text) {
  $("token-message").textContent = text;
  $("token-message").className = "error";
  $("token-panel").hidden = false;
  $("token").focus();
}

/** A token-guarded read: tells whether this tab's token (or no token) is accepted. */
async function checkAccess() {
  try {
    await api.words();
    $("token-panel").hidden = true;
    return true;
  } catch (err) {
    if (err.code !== "UNAUTHORIZED") {
      showError(err);
      return false;
    }
    if (getToken()) {
      showError(err);
    } else {
      $("token-message").textContent =
        "This sidecar needs its API token for predictions and writes.";
      $("token-message").className = "";
      $("token-panel").hidden = false;
    }
    return false;
  }
}

async function onToken(ev) {
  ev.preventDefault();
  setToken($("token").value);
  $("token").value = "";
  if (await checkAccess()) showMessage("Token accepted: swipe away.", "ok");
}

export async function refreshStats() {
  let stats;
  try {
    stats = await api.stats();
  } catch (err) {
    showError(err);
    return;
  }
  const s = stats.swipes;
  $("stat-total").textContent = `${s.total} (train ${s.train}, held-out ${s.heldout})`;
  $("stat-new").textContent = String(s.new_since_training);
  $("stat-model").textContent = versionText(stats.model.version);
  if (stats.model.version) showVersion(stats.model.version);
  $("stat-personal").textContent = jobSummary(stats.personalization);
  $("stat-words").textContent = String(stats.personal_words);
  $("stat-predictions").textContent = String(stats.predictions_served);
}

function jobSummary(job) {
  if (!job) return "not run yet";
  if (job.state === "succeeded" && job.result) return `last job: ${job.result.outcome}`;
  return `last job: ${job.state} (${job.phase})`;
}

function mrr(metrics) {
  return metrics && typeof metrics.mrr === "number" ? metrics.mrr.toFixed(3) : "?";
}

function jobResult(job) {
  const r = job.result || {};
  const scores = `held-out MRR ${mrr(r.release_metrics)} → ${mrr(r.personalized_metrics)}`;
  if (job.state === "failed") return [`Personalization failed: ${job.error || "see the log"}`, "error"];
  if (job.state === "cancelled") return ["Personalization was cancelled.", "error"];
  if (r.outcome === "accepted")
    return [`Accepted (${scores}): the personalized model answers from now on.`, "ok"];
  if (r.outcome === "stale") return [r.message || "The release changed while training.", "error"];
  return [`Not accepted (${scores}): the release keeps answering.`, "error"];
}

async function train() {
  const button = $("train");
  const status = $("train-status");
  const bar = $("train-progress");
  button.disabled = true;
  try {
    let job = await api.train();
    bar.hidden = false;
    while (job.state === "queued" || job.state === "running") {
      bar.value = job.progress || 0;
      const steps = job.total_steps ? ` step ${job.step}/${job.total_steps}` : "";
      status.textContent = `Personalizing: ${job.phase}${steps}`;
      status.className = "";
      await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
      job = await api.job(job.id);
    }
    bar.value = 1;
    const [text, kind] = jobResult(job);
    status.textContent = text;
    status.className = kind;
  } catch (err) {
    status.textContent = showError(err);
    status.className = "error";
  } finally {
    button.disabled = false;
    refreshStats();
  }
}

async function addWords(ev) {
  ev.preventDefault();
  const input = $("words-input");
  const words = input.value.toLowerCase().split(/[\s,]+/).filter(Boolean);
  const status = $("words-status");
  if (!words.length) return;
  try {
    const answer = await api.addWords(words);
    input.value = "";
    status.textContent =
      `Added ${answer.added} (${answer.total} in all)` +
      (answer.active ? ": decodable now, no retraining needed." : ".");
    status.className = "ok";
    refreshStats();
  } catch (err) {
    status.textContent = showError(err);
    status.className = "error";
  }
}

export function initPanels() {
  $("token-form").addEventListener("submit", onToken);
  $("train").addEventListener("click", train);
  $("words-form").addEventListener("submit", addWords);
  checkAccess();
  refreshStats();
  setInterval(refreshStats, STATS_EVERY_MS);
}
