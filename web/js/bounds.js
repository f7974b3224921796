// The request's bounds and defaults, read from the API's own OpenAPI schema
// so the form never disagrees with the contract it submits to.

import { loadOpenApi } from "./api.js";

// The one rule the schema cannot state: frames are 6k+1 because Mochi's VAE
// compresses time 6x (contracts/mochi_contracts/jobs.py, FRAME_STRIDE; a test
// checks the two agree).
export const FRAME_STRIDE = 6;

// {field: {minimum, maximum, multipleOf, minLength, maxLength, default, description}}
export async function loadBounds() {
  const schema = await loadOpenApi();
  const props = schema?.components?.schemas?.JobRequest?.properties;
  if (!props) throw new Error("the API's OpenAPI schema has no JobRequest");
  return props;
}

// Problems with one value against its schema, worded like the API's own errors.
export function checkValue(spec, value) {
  if (!spec) return null;
  if (typeof value === "string") {
    if (spec.minLength !== undefined && value.length < spec.minLength) return "required";
    if (spec.maxLength !== undefined && value.length > spec.maxLength) return `at most ${spec.maxLength} characters`;
    return null;
  }
  if (Number.isNaN(value)) return "must be a number";
  if (spec.type === "integer" && !Number.isInteger(value)) return "must be a whole number";
  if (spec.minimum !== undefined && value < spec.minimum) return `must be at least ${spec.minimum}`;
  if (spec.maximum !== undefined && value > spec.maximum) return `must be at most ${spec.maximum}`;
  if (spec.multipleOf && value % spec.multipleOf) return `must be a multiple of ${spec.multipleOf}`;
  return null;
}

// The hint shown under a field before anything is submitted, e.g. "64–1280, multiple of 16".
export function describe(spec, unit = "") {
  if (!spec) return "";
  const parts = [];
  if (spec.minimum !== undefined && spec.maximum !== undefined) parts.push(`${spec.minimum}–${spec.maximum}${unit}`);
  if (spec.multipleOf) parts.push(`multiple of ${spec.multipleOf}`);
  if (spec.maxLength !== undefined) parts.push(`up to ${spec.maxLength} characters`);
  return parts.join(", ");
}
