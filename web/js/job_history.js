// A job's past events, read from its own event stream up to the API's
// ": replayed" comment and then let go: its live events come from the one
// shared stream (event_feed.js), so a job page never holds a second one.
// fetch, not EventSource: it can stop at a comment and send the key as a header.

import { ApiError, authHeaders } from "./api.js";
import { eventJobId } from "./live.js";

// onEvent(type, data, id) for each event, oldest first; resolves once the
// history is all read (or the stream ended after the final event).
export async function readHistory(url, { onEvent, signal }) {
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "text/event-stream", ...authHeaders() }, signal });
  } catch (err) {
    if (signal?.aborted) return;
    throw new ApiError("unreachable", 0, null);
  }
  if (!resp.ok) throw new ApiError(resp.status === 401 || resp.status === 403 ? "auth" : "http", resp.status, null);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let message = { event: "message", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop(); // an unfinished line waits for the next chunk
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (message.data.length) dispatch(message, onEvent);
          message = { event: "message", data: [], id: null };
        } else if (line.startsWith(":")) {
          if (line.slice(1).trim() === "replayed") return;
        } else {
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          if (field === "event") message.event = value;
          else if (field === "data") message.data.push(value);
          else if (field === "id") message.id = value;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // closes the connection: the rest is the shared stream's
  }
}

function dispatch(message, onEvent) {
  let data;
  try {
    data = JSON.parse(message.data.join("\n"));
  } catch {
    return; // not an event this page understands
  }
  const jobId = eventJobId(data);
  if (jobId && !data.job_id) data.job_id = jobId;
  onEvent(message.event, data, message.id);
}
