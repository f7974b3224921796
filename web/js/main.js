// Start-up and hash routing: "#/" is the form and the live list,
// "#/jobs/<id>" one job. Hash routes need no server-side fallback.

import { probe } from "./api.js";
import { setUpBanner } from "./banner.js";
import { loadBounds } from "./bounds.js";
import { $ } from "./dom.js";
import { shortId } from "./format.js";
import { homeHash, setUpFilters } from "./job_filters.js";
import { JobForm } from "./job_form.js";
import { JobList } from "./job_list.js";
import { JobPage } from "./job_page.js";
import { getKey, onKeyChange, setKey } from "./key.js";
import { openEventFeed } from "./event_feed.js";
import { keepRelativeTimesFresh } from "./relative_time.js";

const banner = setUpBanner();
const list = new JobList();
let form = null;

// The same settings with a fresh seed (the same seed renders the same video), unless asked to keep it.
function runAgain(request, { keepSeed = false } = {}) {
  location.hash = homeHash();
  form?.fill(keepSeed ? request : { ...request, seed: "" });
  $("#draft-note").hidden = true;
  nextFocus = "#f-prompt"; // once route() has shown the form
  route();
  $("#form-status").textContent = keepSeed
    ? "Settings and seed copied from the job: the same seed renders the same video."
    : "Settings copied from the job with a new seed: change anything, then generate.";
}

function onSubmitted(job) {
  list.add(job);
  const status = $("#form-status");
  status.replaceChildren("Queued ", Object.assign(document.createElement("a"), {
    href: `#/jobs/${job.id}`, textContent: `job ${shortId(job.id)}`,
  }), ". It appears in the list below and updates live.");
}

function setLiveState(state) {
  const el = $("#live-state");
  el.dataset.state = state;
  el.textContent = state === "open" ? "Live" : "Reconnecting…";
}

let hadTrouble = false;
const feed = openEventFeed({
  onState: (state) => {
    setLiveState(state);
    if (state === "retrying") hadTrouble = true;
    if (state === "open") {
      banner.clear();
      if (!form) return start();
      // Events while the API was away are not all replayed (a stream that had
      // seen no event has no Last-Event-ID), so the list is read again once.
      if (hadTrouble) list.reload().catch(() => {});
      if (!$("#job-view").hidden) page.retry();
      hadTrouble = false;
    }
  },
});
feed.on((type, ev) => type !== "log" && list.onEvent(type, ev));
// A job that starts or ends changes the queue and the measured pace: the form's estimate is asked again.
feed.on((type) => ["started", "completed", "failed", "cancelled", "expired"].includes(type) && form?.showEstimate());
document.documentElement.dataset.feed = feed.kind; // which way this browser shares its stream
const page = new JobPage($("#job-view"), { feed, onRunAgain: runAgain });

// Where the keyboard goes when the home view shows next (null: back on the job's row).
let nextFocus = null;

function route() {
  const match = location.hash.match(/^#\/jobs\/([0-9a-f]+)$/);
  const left = !$("#job-view").hidden && page.wanted;
  $("#home-view").hidden = Boolean(match);
  $("#job-view").hidden = !match;
  if (match) {
    page.show(match[1]);
    document.title = `Job ${shortId(match[1])} · Mochi Serve`;
  } else {
    page.leave();
    document.title = "Mochi Serve";
    // Back from a job: the keyboard is where it was, on that job's row (or the list).
    const target = nextFocus ? $(nextFocus) : left ? document.querySelector(`#job-${left} .job-link`) || $("#jobs-title") : null;
    nextFocus = null;
    target?.focus();
  }
}

function setUpKeyField() {
  const input = $("#api-key");
  input.value = getKey();
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    $("#key-status").textContent = input.value.trim() ? "Key saved in this browser." : "No key: requests go without one.";
  });
  $("#key-clear").addEventListener("click", () => {
    input.value = "";
    setKey("");
    $("#key-status").textContent = "Key forgotten.";
  });
  onKeyChange(() => {
    feed.restart();
    list.reload().catch(() => {});
    if (!$("#job-view").hidden) page.restart();
    if (!form) start();
  });
}

// The form needs the bounds, which need the API; if it is down or refuses the
// key, the banner says so, and the stream's reconnection or a new key calls
// this again (no timer of its own).
let starting = null;

function start() {
  starting ||= boot().finally(() => (starting = null));
  return starting;
}

async function boot() {
  try {
    const bounds = await loadBounds();
    form ||= new JobForm(bounds, { onSubmitted });
    $("#job-form").removeAttribute("aria-busy");
    $("#submit").disabled = false;
    await list.reload();
  } catch {
    probe().catch(() => {});
  }
}

setUpKeyField();
setUpFilters();
keepRelativeTimesFresh();
window.addEventListener("hashchange", route);
route();
start();
