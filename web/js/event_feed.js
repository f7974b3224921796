// Live events of every job this key may see, one connection per browser
// whatever the number of tabs: a SharedWorker holds the one EventSource
// (live_worker.js); where there is none (Chrome on Android), the tabs elect a
// leader with a Web Lock that holds it and repeats its events on a
// BroadcastChannel; with neither, each tab has its own stream.
//
// feed.on(fn) subscribes fn(type, data, id) and returns the unsubscribe;
// onState("connecting" | "open" | "retrying") says how the stream is.

import { probe } from "./api.js";
import { getKey } from "./key.js";
import { FEED_TYPES, LiveStream } from "./live.js";

const CHANNEL = "mochi-serve-events";

class Feed {
  constructor(onState) {
    this.onStateChange = onState;
    this.handlers = new Set();
    this.state = "connecting";
  }

  on(fn) {
    this.handlers.add(fn);
    return () => this.handlers.delete(fn);
  }

  deliver({ kind, type, data, id, state }) {
    if (kind === "event") {
      for (const fn of [...this.handlers]) fn(type, data, id);
    } else if (kind === "state" && state !== this.state) {
      this.state = state;
      // The worker or the leader cannot show this tab's banner: ask here why.
      if (state === "retrying") probe().catch(() => {});
      this.onStateChange(state);
    }
  }
}

class WorkerFeed extends Feed {
  start() {
    this.worker = new SharedWorker(new URL("./live_worker.js", import.meta.url),
                                   { type: "module", name: CHANNEL });
    this.worker.port.onmessage = ({ data }) => this.deliver(data);
    this.worker.port.start();
    this.hello();
    // A page kept in the back-forward cache says goodbye and hello again.
    addEventListener("pagehide", () => this.worker.port.postMessage({ cmd: "bye" }));
    addEventListener("pageshow", (e) => e.persisted && this.hello());
  }

  hello() {
    this.worker.port.postMessage({ cmd: "start", key: getKey() });
  }

  restart() {
    this.hello(); // the worker opens a new stream when the key changed
  }
}

class LeaderFeed extends Feed {
  start() {
    this.lastId = null;
    this.stream = null;
    this.channel = new BroadcastChannel(CHANNEL);
    this.channel.onmessage = ({ data }) => {
      if (data.kind === "ask") {
        if (this.stream) this.channel.postMessage({ kind: "state", state: this.state });
        return;
      }
      if (data.kind === "restart") {
        if (this.stream) this.stream.restart();
        return;
      }
      if (data.id) this.lastId = data.id;
      this.deliver(data);
    };
    // Whoever holds the lock leads until its tab goes; then the next waiter
    // leads, resuming after the last event every tab saw.
    navigator.locks.request(`${CHANNEL}-leader`, () => new Promise(() => this.lead()));
    this.channel.postMessage({ kind: "ask" });
  }

  lead() {
    const send = (message) => {
      this.channel.postMessage(message);
      this.deliver(message);
    };
    this.stream = new LiveStream("/v1/events", {
      types: FEED_TYPES,
      explain: () => null,
      onEvent: (type, data, id) => {
        if (id) this.lastId = id;
        send({ kind: "event", type, data, id });
      },
      onState: (state) => send({ kind: "state", state }),
    });
    this.stream.lastId = this.lastId;
    this.stream.start();
  }

  restart() {
    if (this.stream) this.stream.restart();
    else this.channel.postMessage({ kind: "restart" });
  }
}

class OwnFeed extends Feed {
  start() {
    this.stream = new LiveStream("/v1/events", {
      types: FEED_TYPES,
      explain: () => null,
      onEvent: (type, data, id) => this.deliver({ kind: "event", type, data, id }),
      onState: (state) => this.deliver({ kind: "state", state }),
    });
    this.stream.start();
  }

  restart() {
    this.stream.restart();
  }
}

export function openEventFeed({ onState }) {
  const Kind = typeof SharedWorker === "function" ? WorkerFeed
    : typeof BroadcastChannel === "function" && navigator.locks ? LeaderFeed
    : OwnFeed;
  const feed = new Kind(onState);
  feed.kind = Kind.name;
  feed.start();
  return feed;
}
