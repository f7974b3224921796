// Every call to the API: the key in the Authorization header, problem+json
// errors turned into ApiError, and "unreachable" told apart from "refused".

import { getKey } from "./key.js";

export class ApiError extends Error {
  // kind: "unreachable" (no HTTP answer), "auth" (401/403), "http" (any other error status)
  constructor(kind, status, problem, retryAfter = null) {
    super(problem?.detail || problem?.title || (kind === "unreachable" ? "the API is unreachable" : `HTTP ${status}`));
    this.kind = kind;
    this.status = status;
    this.problem = problem || {};
    // Seconds from Retry-After (429, 503), or null.
    this.retryAfter = retryAfter;
  }

  // [{field, message}] for invalid requests, [] otherwise.
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

const errorListeners = [];

// The banner listens here, so any failing call explains itself once, in one place.
export function onApiError(fn) {
  errorListeners.push(fn);
}

const successListeners = [];

export function onApiSuccess(fn) {
  successListeners.push(fn);
}

export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function call(path, { method = "GET", body, rawBody } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined || rawBody !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)) });
  } catch {
    const err = new ApiError("unreachable", 0, null);
    errorListeners.forEach((fn) => fn(err));
    throw err;
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!resp.ok) {
    const kind = resp.status === 401 || resp.status === 403 ? "auth" : "http";
    const wait = Number.parseInt(resp.headers.get("Retry-After") ?? "", 10);
    const err = new ApiError(kind, resp.status, data, Number.isFinite(wait) ? wait : null);
    // Field errors belong beside their fields, not in the banner.
    if (kind !== "http" || resp.status >= 500) errorListeners.forEach((fn) => fn(err));
    throw err;
  }
  successListeners.forEach((fn) => fn());
  return { data, text };
}

// Seeds go up to 2^63-1 but JavaScript numbers are exact only to 2^53, so a
// seed travels as the digits the user typed or the API sent, never as a Number.
const SEED_IN_JSON = /"seed":\s*(\d+)/;

function withExactSeed(job, text) {
  const raw = text.match(SEED_IN_JSON);
  if (raw && job?.request) job.request.seed = raw[1];
  return job;
}

export async function submitJob(request) {
  const { seed, ...rest } = request;
  let rawBody = JSON.stringify(rest);
  if (seed !== undefined && seed !== "") rawBody = rawBody.replace(/}$/, `,"seed":${seed}}`);
  const { data, text } = await call("/v1/jobs", { method: "POST", rawBody });
  return withExactSeed(data, text);
}

// POST /v1/estimates: how long this request would take here (resources.JobEstimate).
export async function estimateJob(request) {
  return (await call("/v1/estimates", { method: "POST", body: request })).data;
}

export async function getJob(id) {
  const { data, text } = await call(`/v1/jobs/${encodeURIComponent(id)}`);
  return withExactSeed(data, text);
}

export async function listJobs({ statuses = [], cursor = null, limit = 20 } = {}) {
  const params = new URLSearchParams({ limit: String(limit) });
  statuses.forEach((s) => params.append("status", s));
  if (cursor) params.set("cursor", cursor);
  return (await call(`/v1/jobs?${params}`)).data;
}

export async function cancelJob(id) {
  return (await call(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" })).data;
}

export async function loadOpenApi() {
  return (await call("/schema/openapi.json")).data;
}

// The video as a blob, fetched with the key in the header (see videoSource in job_page.js).
export async function fetchVideo(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: authHeaders() });
  } catch {
    throw new ApiError("unreachable", 0, null);
  }
  if (!resp.ok) throw new ApiError(resp.status === 401 || resp.status === 403 ? "auth" : "http", resp.status, null);
  return resp.blob();
}

// A cheap authenticated call that tells why a stream could not open.
export async function probe() {
  await call("/v1/jobs?limit=1");
}

// EventSource cannot send an Authorization header, so event stream URLs carry
// the key as the `api_key` query parameter, which the API accepts on its GET
// event streams (and only there: a key in a URL ends up in logs and history).
export function withKey(url) {
  const key = getKey();
  if (!key) return url;
  return `${url}${url.includes("?") ? "&" : "?"}api_key=${encodeURIComponent(key)}`;
}
