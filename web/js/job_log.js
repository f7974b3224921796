// A job's own log: the lines its runners wrote about it (`log` events on its
// stream, GET /v1/jobs/{id}/logs), such as where it rendered, retried uploads
// and why an attempt failed. Kept apart from the timeline, which shows states.

import { h } from "./dom.js";
import { formatClock } from "./format.js";

export class JobLog {
  constructor() {
    this.list = h("ol", { class: "job-log", id: "job-log", "aria-live": "polite" });
    this.empty = h("p", { class: "muted", id: "job-log-empty" }, "No log lines yet.");
  }

  add(ev) {
    this.empty.hidden = true;
    this.list.append(h("li", { class: `log-line log-${ev.level}` },
      h("time", { datetime: ev.time }, formatClock(ev.time)), " ",
      h("span", { class: "log-level" }, ev.level), " ",
      h("span", { class: "log-message" }, ev.message),
      ev.runner ? h("span", { class: "muted" }, ` (${ev.runner})`) : ""));
  }

  // A refused event ({seq, subject, reason}: `event: rejected` on the job's stream).
  refused(ev) {
    this.add({ level: "warning", message: `event ${ev.seq} on ${ev.subject} refused: ${ev.reason}` });
  }
}
