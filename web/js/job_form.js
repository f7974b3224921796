// The submit form: bounds from the schema shown as hints, the length in
// seconds or frames, and every error beside the field it is about, whether
// this page or the API found it.

import { ApiError, submitJob } from "./api.js";
import { checkValue, describe } from "./bounds.js";
import { $, h } from "./dom.js";
import { chooseDraft, FormEstimate } from "./form_estimate.js";
import { framesFromSeconds, isValidFrameCount, secondsFromFrames, snapFrames } from "./length.js";
import { DRAFTS, presetFor, RESOLUTIONS } from "./presets.js";
import { requestSnippets } from "./snippets.js";

const SEED_MAX = 2n ** 63n - 1n;
const SEED_HELP = `a whole number from 0 to ${SEED_MAX} (2⁶³−1), or empty for a random one`;
// The embedded stack (`make up`) answers on loopback only; a deployment behind
// a name is not a newcomer's CPU, and opens on the API's reference settings.
const EMBEDDED = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);

// API field -> the input that sets it.
const INPUTS = {
  prompt: "f-prompt", negative_prompt: "f-negative", width: "f-width", height: "f-height",
  num_frames: "f-length", num_inference_steps: "f-steps", guidance_scale: "f-guidance", seed: "f-seed", fps: "f-fps",
};

export class JobForm {
  constructor(bounds, { onSubmitted }) {
    this.bounds = bounds;
    this.onSubmitted = onSubmitted;
    this.form = $("#job-form");
    this.estimate = new FormEstimate((said) => this.renderEstimate(said));
    this.reference = Object.fromEntries(Object.entries(bounds).map(([k, v]) => [k, v.default]));
    this.fillPresets();
    this.showBounds();
    this.fill(this.reference);
    if (EMBEDDED) this.openOnDraft();
    // An error goes as soon as its field is fixed, not at the next submit.
    this.form.addEventListener("input", (e) => {
      this.recheck(e.target);
      this.showEstimate();
    });
    this.form.addEventListener("change", () => this.showEstimate());
    $("#use-reference").addEventListener("click", () => {
      this.fill({ ...this.reference, prompt: $("#f-prompt").value, negative_prompt: $("#f-negative").value });
      $("#draft-note").hidden = true;
      this.showEstimate();
      $("#f-prompt").focus();
    });
    this.showEstimate(true);
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    $("#f-preset").addEventListener("change", () => this.applyPreset());
    for (const id of ["f-width", "f-height"]) $(`#${id}`).addEventListener("input", () => this.syncPreset());
    for (const id of ["f-length", "f-fps"]) $(`#${id}`).addEventListener("input", () => this.showLength());
    $("#f-length-unit").addEventListener("change", () => this.switchUnit());
  }

  // The largest draft expected within a minute here, so a first video comes quickly;
  // the API's own defaults stay Mochi's reference settings, one click away.
  async openOnDraft() {
    const draft = await chooseDraft(DRAFTS);
    const typed = { prompt: $("#f-prompt").value, negative_prompt: $("#f-negative").value };
    this.fill({ ...this.reference, ...draft, ...typed });
    $("#draft-note").hidden = false;
    this.showEstimate();
  }

  // "About 3 min here, starting at once (done about 14:05:10)." under the submit
  // button, from the API; the request as curl and Python beside it.
  showEstimate(now = false) {
    const { request, errors: all } = this.read();
    // The prompt's text changes nothing in the time, nor what the request looks like.
    const errors = all.filter((e) => e.field !== "prompt" && e.field !== "negative_prompt");
    this.estimate.ask(errors.length ? null : request, { now });
    $("#snippets").replaceChildren(...requestSnippets(location.origin, errors.length ? null : request));
  }

  renderEstimate(said) {
    const out = $("#estimate");
    out.hidden = !said;
    out.textContent = said?.text || "";
    out.dataset.warn = said?.warn ? "true" : "false";
    out.dataset.state = said?.state || "none";
  }

  // One field, again: its message goes once it is fixed (others keep theirs).
  recheck(input) {
    const field = Object.keys(INPUTS).find((f) => INPUTS[f] === input.id)
      || (input.id === "f-fps" || input.id === "f-length-unit" ? "num_frames" : null);
    if (!field) return;
    const { errors } = this.read();
    const still = errors.filter((e) => e.field === field || (field === "num_frames" && e.field === "fps"));
    for (const f of field === "num_frames" ? ["num_frames", "fps"] : [field]) {
      const mine = still.filter((e) => e.field === f);
      const slot = $(`#e-${f}`);
      const box = $(`#${INPUTS[f]}`);
      if (!mine.length && slot && !slot.hidden) {
        slot.textContent = "";
        slot.hidden = true;
        box.removeAttribute("aria-invalid");
      }
    }
  }

  fillPresets() {
    const select = $("#f-preset");
    select.replaceChildren(...RESOLUTIONS.map((r) => h("option", { value: r.id }, r.label)),
                           h("option", { value: "custom" }, "Custom (width and height below)"));
  }

  showBounds() {
    const b = this.bounds;
    $("#h-prompt").textContent = describe(b.prompt);
    $("#h-negative_prompt").textContent = describe(b.negative_prompt);
    $("#h-width").textContent = describe(b.width, " px");
    $("#h-height").textContent = describe(b.height, " px");
    $("#h-num_inference_steps").textContent = `${describe(b.num_inference_steps)}; more is slower and finer`;
    $("#h-guidance_scale").textContent = `${describe(b.guidance_scale)}; 1 or less turns guidance off`;
    $("#h-fps").textContent = describe(b.fps);
    $("#h-seed").textContent = "Empty: the API draws one, shown on the job page; the same seed and settings render the same video.";
    for (const [field, id] of Object.entries(INPUTS)) {
      const spec = b[field];
      const input = $(`#${id}`);
      if (!spec || id === "f-length") continue;
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined && field !== "seed") input.max = spec.maximum;
      if (spec.maxLength !== undefined) input.maxLength = spec.maxLength;
    }
  }

  fill(request) {
    $("#f-prompt").value = request.prompt ?? "";
    $("#f-negative").value = request.negative_prompt ?? "";
    $("#f-width").value = request.width;
    $("#f-height").value = request.height;
    $("#f-steps").value = request.num_inference_steps;
    $("#f-guidance").value = request.guidance_scale;
    $("#f-fps").value = request.fps;
    $("#f-seed").value = request.seed ?? "";
    // Lengths that are whole tenths of a second read best as seconds.
    const seconds = secondsFromFrames(request.num_frames, request.fps);
    const exact = framesFromSeconds(seconds, request.fps, this.maxFrames) === request.num_frames;
    $("#f-length-unit").value = exact ? "seconds" : "frames";
    $("#f-length").value = exact ? seconds : request.num_frames;
    this.syncPreset();
    this.showLength();
    this.clearErrors();
  }

  get maxFrames() {
    return this.bounds.num_frames.maximum;
  }

  applyPreset() {
    const preset = RESOLUTIONS.find((r) => r.id === $("#f-preset").value);
    if (!preset) return $("#f-width").focus();
    $("#f-width").value = preset.width;
    $("#f-height").value = preset.height;
  }

  syncPreset() {
    $("#f-preset").value = presetFor(Number($("#f-width").value), Number($("#f-height").value));
  }

  switchUnit() {
    const fps = Number($("#f-fps").value) || this.bounds.fps.default;
    const value = Number($("#f-length").value);
    const toSeconds = $("#f-length-unit").value === "seconds";
    $("#f-length").value = toSeconds ? secondsFromFrames(value, fps) : framesFromSeconds(value, fps, this.maxFrames);
    this.showLength();
  }

  // Seconds become the nearest 6k+1 frames; never fewer than asked to fit the
  // maximum: a length beyond it stays beyond it, and read() says so.
  frames() {
    const value = Number($("#f-length").value);
    if ($("#f-length-unit").value === "frames") return value;
    const fps = Number($("#f-fps").value);
    if (!(value > 0 && fps > 0)) return NaN;
    const asked = Math.round(value * fps);
    return asked > this.maxFrames ? asked : framesFromSeconds(value, fps, this.maxFrames);
  }

  // What the length means, before submitting: frames and seconds, and the valid neighbours.
  showLength() {
    const frames = this.frames();
    const fps = Number($("#f-fps").value);
    const out = $("#h-num_frames");
    const limits = `${this.bounds.num_frames.minimum}–${this.maxFrames} frames of the form 6k+1`;
    if (!Number.isFinite(frames) || !(fps > 0)) {
      out.textContent = limits;
    } else if (frames > this.maxFrames) {
      out.textContent = `${limits}; ${frames} frames is too long (up to ${secondsFromFrames(this.maxFrames, fps)} s at ${fps} fps)`;
    } else if (!isValidFrameCount(frames)) {
      const below = snapFrames(frames - 3, this.maxFrames);
      out.textContent = `${limits}; ${frames} is not one: try ${below} or ${Math.min(below + 6, this.maxFrames)}`;
    } else {
      const maxSeconds = secondsFromFrames(this.maxFrames, fps);
      out.textContent = `= ${frames} frames, ${(frames / fps).toFixed(1)} s at ${fps} fps (${limits}; up to ${maxSeconds} s)`;
    }
  }

  read() {
    const num = (id) => ($(`#${id}`).value.trim() === "" ? NaN : Number($(`#${id}`).value));
    const request = {
      prompt: $("#f-prompt").value,
      negative_prompt: $("#f-negative").value,
      width: num("f-width"),
      height: num("f-height"),
      num_frames: this.frames(),
      num_inference_steps: num("f-steps"),
      guidance_scale: num("f-guidance"),
      fps: num("f-fps"),
    };
    const seed = $("#f-seed").value.trim();
    const errors = [];
    for (const [field, value] of Object.entries(request)) {
      const problem = checkValue(this.bounds[field], value);
      if (problem) errors.push({ field, message: problem });
    }
    const tooLong = errors.find((e) => e.field === "num_frames" && request.num_frames > this.maxFrames);
    if (tooLong && $("#f-length-unit").value === "seconds" && request.fps > 0) {
      const most = secondsFromFrames(this.maxFrames, request.fps);
      tooLong.message = `${$("#f-length").value} s at ${request.fps} fps is ${request.num_frames} frames; Mochi makes `
        + `at most ${this.maxFrames} (${most} s at ${request.fps} fps): make it ${most} s or shorter, or lower the fps`;
    } else if (tooLong) {
      tooLong.message = `at most ${this.maxFrames} frames: make it ${this.maxFrames} or fewer`;
    }
    if (seed && !/^\d+$/.test(seed)) errors.push({ field: "seed", message: SEED_HELP });
    else if (seed && BigInt(seed) > SEED_MAX) errors.push({ field: "seed", message: SEED_HELP });
    else if (seed) request.seed = seed; // digits, sent verbatim (see api.js)
    return { request, errors };
  }

  async submit() {
    this.clearErrors();
    const { request, errors } = this.read();
    if (errors.length) return this.showErrors(errors);
    const button = $("#submit");
    button.disabled = true;
    button.textContent = "Submitting…";
    try {
      const job = await submitJob(request);
      this.onSubmitted(job);
      this.showEstimate(true);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        const wait = err.retryAfter ? `in ${err.retryAfter} s` : "in a minute";
        this.showErrors([{ field: "body", message: `Too many submissions for now: try again ${wait}. Nothing was queued.` }]);
      } else if (err instanceof ApiError && err.fieldErrors.length) {
        // The API's wording for a seed is the decoder's; this page's says what to type.
        this.showErrors(err.fieldErrors.map((e) => (e.field === "seed" ? { field: "seed", message: SEED_HELP } : e)));
      } else {
        this.showErrors([{ field: "body", message: err.message }]);
      }
    } finally {
      button.disabled = false;
      button.textContent = "Generate video";
    }
  }

  showErrors(errors) {
    let first = null;
    for (const { field, message } of errors) {
      const slot = $(`#e-${field}`) || $("#e-body");
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      slot.hidden = false;
      const input = INPUTS[field] && $(`#${INPUTS[field]}`);
      if (input) input.setAttribute("aria-invalid", "true");
      first ||= input || slot;
    }
    first?.focus?.();
  }

  clearErrors() {
    for (const slot of this.form.querySelectorAll(".field-error")) {
      slot.textContent = "";
      slot.hidden = true;
    }
    for (const input of this.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }
}
