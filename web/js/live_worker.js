// The SharedWorker behind event_feed.js: one EventSource on /v1/events for
// every tab of this origin, its events relayed to each tab's port. A browser
// allows six HTTP/1.1 connections per host; a stream per tab (or two per job
// page) used them all up and the seventh tab hung. HTTP/2 would lift the limit,
// but the embedded stack serves HTTP/1.1 (uvicorn has no HTTP/2) and swapping it
// for hypercorn would change the server of every deployment for the web app's
// sake, so the browser shares one stream instead.

import { setKey } from "./key.js";
import { FEED_TYPES, LiveStream } from "./live.js";

const ports = new Set();
let stream = null;
let key = null;
let state = "connecting";

function relay(message) {
  for (const port of ports) port.postMessage(message);
}

// A page's key is in its localStorage, which a worker cannot read: pages send it.
function follow(newKey) {
  if (stream && newKey === key) return;
  key = newKey;
  setKey(key); // kept in key.js's memory here, so withKey() puts it in the stream's URL
  stream?.stop();
  state = "connecting";
  stream = new LiveStream("/v1/events", {
    types: FEED_TYPES,
    explain: () => null, // each page asks the API why, for its own banner
    onEvent: (type, data, id) => relay({ kind: "event", type, data, id }),
    onState: (next) => {
      state = next;
      relay({ kind: "state", state });
    },
  });
  stream.start();
}

self.onconnect = (connect) => {
  const port = connect.ports[0];
  port.onmessage = ({ data }) => {
    if (data.cmd === "start") {
      ports.add(port);
      follow(data.key);
      port.postMessage({ kind: "state", state });
    } else if (data.cmd === "bye") {
      ports.delete(port);
      // No tab left: no stream held for nobody (a tab that comes back starts it again).
      if (!ports.size) {
        stream?.stop();
        stream = null;
      }
    }
  };
  port.start();
};
