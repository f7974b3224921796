// A video's length as people think of it (seconds) and as Mochi needs it
// (6k+1 frames).

import { FRAME_STRIDE } from "./bounds.js";

// The valid frame count nearest to `frames`, within [1, max].
export function snapFrames(frames, max) {
  const k = Math.round((frames - 1) / FRAME_STRIDE);
  const top = Math.floor((max - 1) / FRAME_STRIDE);
  return Math.min(Math.max(k, 0), top) * FRAME_STRIDE + 1;
}

export function framesFromSeconds(seconds, fps, max) {
  return snapFrames(Math.round(seconds * fps), max);
}

export function secondsFromFrames(frames, fps) {
  return Math.round((frames / fps) * 10) / 10;
}

export function isValidFrameCount(frames) {
  return Number.isInteger(frames) && (frames - 1) % FRAME_STRIDE === 0;
}
