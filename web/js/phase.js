// What a job is doing, in words (progress.phase, mochi_contracts/phases.py).

// In the order a job goes through them (mochi_contracts.phases.PHASES).
const ORDER = ["queued", "encoding_prompt", "denoising", "decoding", "encoding_video", "storing", "finished"];

// The further on of two phases: a resource read before an event must not take the job back.
export function laterPhase(a, b) {
  return ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a;
}

const WORDS = {
  queued: "queued",
  encoding_prompt: "encoding the prompt",
  decoding: "decoding",
  encoding_video: "encoding the video",
  storing: "storing",
  finished: "finished",
};

// A running job's phase; an API or a job from before phases existed says
// nothing, and a job that has stepped is denoising until a runner says otherwise.
export function phaseOf(job) {
  const said = job.progress?.phase;
  if (said && said !== "queued") return said;
  if (job.status === "running") return job.progress.step > 0 ? "denoising" : "encoding_prompt";
  return said || job.status;
}

export function phaseWords(phase) {
  return WORDS[phase] || (phase === "denoising" ? "denoising" : String(phase).replace(/_/g, " "));
}

export function phaseText(job) {
  const phase = phaseOf(job);
  if (phase === "denoising") return `denoising step ${job.progress.step} of ${job.progress.total_steps}`;
  return phaseWords(phase);
}
