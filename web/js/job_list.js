// The live gallery: one page from GET /v1/jobs, then every change from the
// API's event stream (live previews and phases included), so nothing polls.

import { getJob, listJobs } from "./api.js";
import { $ } from "./dom.js";
import { applyEvent, withPace } from "./job_state.js";
import { jobRow, updateRow } from "./job_row.js";
import { PASSING_TYPES } from "./live.js";
import { PaceRefresh } from "./pace.js";

const PAGE = 20;
// Queue positions are in GET /v1/jobs/{id} only; they change when a job
// leaves the queue, so they are asked for then, and at most this many.
const MAX_QUEUED_REFRESH = 20;

export class JobList {
  constructor() {
    this.list = $("#job-list");
    this.more = $("#load-more");
    this.empty = $("#jobs-empty");
    this.jobs = new Map();
    this.cursor = null;
    this.statuses = [];
    this.queueTimer = null;
    this.generation = 0;
    this.pace = new PaceRefresh((fresh) => {
      const job = this.jobs.get(fresh.id);
      const next = job && withPace(job, fresh);
      if (next && next !== job) this.update(next);
    });
    this.more.addEventListener("click", () => this.loadMore());
    $("#status-filter").addEventListener("change", () => {
      // One box per status, in the order the page lists them (id filter-<status>).
      this.statuses = [...$("#status-filter").querySelectorAll("input[type=checkbox]:checked")]
        .map((box) => box.id.replace(/^filter-/, ""));
      this.reload().catch(() => {}); // the banner says why
    });
  }

  async reload() {
    // A newer reload (another filter click) wins over one still in flight.
    const generation = ++this.generation;
    const page = await listJobs({ statuses: this.statuses, limit: PAGE });
    if (generation !== this.generation) return;
    this.jobs.clear();
    this.list.replaceChildren();
    this.append(page);
    this.refreshQueued();
  }

  async loadMore() {
    if (!this.cursor) return;
    this.more.disabled = true;
    try {
      const generation = this.generation;
      const page = await listJobs({ statuses: this.statuses, cursor: this.cursor, limit: PAGE });
      if (generation === this.generation) this.append(page);
    } catch {
      // the banner says why; the button stays for another try
    } finally {
      this.more.disabled = false;
    }
  }

  append(page) {
    for (const job of page.jobs) {
      if (this.jobs.has(job.id)) continue;
      this.jobs.set(job.id, job);
      this.list.append(jobRow(job));
    }
    this.cursor = page.next_cursor;
    this.more.hidden = !this.cursor;
    this.showEmpty();
  }

  showEmpty() {
    this.empty.hidden = this.jobs.size > 0;
    this.empty.textContent = this.statuses.length ? "No jobs with these statuses." : "No jobs yet: submit a prompt.";
  }

  matches(job) {
    return !this.statuses.length || this.statuses.includes(job.status);
  }

  // A job this page just submitted, shown before its event arrives.
  add(job) {
    if (this.jobs.has(job.id) || !this.matches(job)) return;
    this.insert(job);
  }

  insert(job) {
    this.jobs.set(job.id, job);
    const row = jobRow(job);
    // Newest first, as the API lists them.
    const after = [...this.list.children].find((li) => this.jobs.get(li.id.slice(4))?.created_at < job.created_at);
    this.list.insertBefore(row, after || null);
    this.showEmpty();
  }

  onEvent(type, data) {
    if (type === "phase" && !data.job_id) {
      // The API's phase data may name no job: the running jobs' resources say whose phase moved.
      for (const job of this.jobs.values()) if (job.status === "running") this.pace.stepped(job.id);
      return;
    }
    const job = this.jobs.get(data.job_id);
    if (job) {
      const next = applyEvent(job, type, data);
      if (next !== job) this.update(next);
      // After a step or a phase the API has a new finish estimate.
      if ((type === "progress" || type === "phase") && next.status === "running") this.pace.stepped(job.id);
    } else if (!PASSING_TYPES.includes(type)) {
      // A job this page has not seen, or one that now enters the filter.
      this.fetchAndInsert(data.job_id);
    }
    if (!PASSING_TYPES.includes(type) || type === "cancel_requested") this.scheduleQueueRefresh();
  }

  update(job) {
    const row = document.getElementById(`job-${job.id}`);
    if (!this.matches(job)) {
      this.jobs.delete(job.id);
      row?.remove();
      this.showEmpty();
      return;
    }
    this.jobs.set(job.id, job);
    if (row) updateRow(row, job);
  }

  async fetchAndInsert(id) {
    let job;
    try {
      job = await getJob(id);
    } catch {
      return; // not visible to this key, or gone; the banner reports outages
    }
    if (this.jobs.has(id)) return this.update(job);
    const oldest = [...this.jobs.values()].at(-1);
    // Older than the last row shown: "load more" will bring it in order.
    if (this.matches(job) && !(this.cursor && oldest && job.created_at < oldest.created_at)) this.insert(job);
  }

  scheduleQueueRefresh() {
    clearTimeout(this.queueTimer);
    this.queueTimer = setTimeout(() => this.refreshQueued(), 300);
  }

  async refreshQueued() {
    const queued = [...this.jobs.values()].filter((j) => j.status === "queued").slice(0, MAX_QUEUED_REFRESH);
    await Promise.all(queued.map(async (old) => {
      try {
        const fresh = await getJob(old.id);
        const now = this.jobs.get(old.id);
        // Events may have moved it on while this was in flight.
        if (now && now.status === "queued") this.update(fresh);
      } catch {
        // the banner reports outages
      }
    }));
  }
}

