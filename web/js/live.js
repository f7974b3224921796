// A server-sent event stream that keeps itself open: the browser's
// EventSource retries a dropped connection by itself, but gives up for good
// when an answer is not an event stream (a 503 while the API starts, a 401);
// then this opens a new one, resuming after the last event it saw.

import { probe, withKey } from "./api.js";

// The events that change a job's state (a runner's `phase` and `preview`
// included); a job's page also asks for "log".
export const STATE_TYPES = ["submitted", "started", "progress", "phase", "preview", "cancel_requested", "completed",
                            "failed", "cancelled", "expired"];
// Events that only move a job along, never bring a new one into a list.
export const PASSING_TYPES = ["progress", "phase", "preview", "cancel_requested"];

const PREVIEW_URL = /\/v1\/jobs\/([0-9a-f]+)\/preview(?:[?#]|$)/;

// The job an event is about: its job_id, or for a preview that names none, the job of its link.
export function eventJobId(data) {
  if (data && typeof data.job_id === "string") return data.job_id;
  const match = typeof data?.url === "string" && data.url.match(PREVIEW_URL);
  return match ? match[1] : null;
}
// What the shared stream carries: states for every list, and "log" for job pages.
export const FEED_TYPES = [...STATE_TYPES, "log"];

export class LiveStream {
  // onEvent(type, data, id); onState("open" | "retrying"); explain() asks the API
  // why the stream failed (a worker, which has no banner, passes a no-op). The
  // streams it opens never end by themselves: a job's own history is job_history.js.
  constructor(url, { onEvent, onState = () => {}, types = STATE_TYPES, explain = probe }) {
    Object.assign(this, { url, onEvent, onState, types, explain });
    this.lastId = null;
    this.source = null;
    this.timer = null;
    this.delay = 1000;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }

  // A new key needs a new connection: the key is part of the URL.
  restart() {
    this.stop();
    this.start();
  }

  open() {
    let url = withKey(this.url);
    if (this.lastId) url += `${url.includes("?") ? "&" : "?"}last_event_id=${encodeURIComponent(this.lastId)}`;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.delay = 1000;
      this.onState("open");
    };
    source.onerror = () => {
      if (this.stopped || source !== this.source) return;
      this.onState("retrying");
      // Ask once why, so the banner can say "unreachable" or "key refused".
      this.explain()?.catch?.(() => {});
      if (source.readyState === EventSource.CLOSED) this.retryLater();
    };
    for (const type of this.types) {
      source.addEventListener(type, (msg) => {
        if (msg.lastEventId) this.lastId = msg.lastEventId;
        let data;
        try {
          data = JSON.parse(msg.data);
        } catch {
          return; // not an event this page understands
        }
        const jobId = eventJobId(data);
        if (jobId && !data.job_id) data.job_id = jobId;
        this.onEvent(type, data, msg.lastEventId);
      });
    }
  }

  retryLater() {
    this.source?.close();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, this.delay);
    this.delay = Math.min(this.delay * 2, 10000);
  }
}
