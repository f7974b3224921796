// The pace is the API's (contracts/mochi_contracts/pace.py), never worked out
// here: after a running job's steps move, its resource is asked for again, at
// most once per MIN_GAP_MS per job, for estimated_finish_at and seconds_per_step.

import { getJob } from "./api.js";

const MIN_GAP_MS = 2000;

export class PaceRefresh {
  // onFresh(job): a fresh resource of a job that stepped.
  constructor(onFresh) {
    this.onFresh = onFresh;
    this.timers = new Map();
    this.last = new Map();
  }

  stepped(id) {
    if (this.timers.has(id)) return; // one ask already waits or is under way
    const wait = Math.max(0, (this.last.get(id) || 0) + MIN_GAP_MS - Date.now());
    this.timers.set(id, setTimeout(async () => {
      this.last.set(id, Date.now());
      try {
        this.onFresh(await getJob(id));
      } catch {
        // the banner reports outages; the next step asks again
      } finally {
        this.timers.delete(id);
      }
    }, wait));
  }
}
