// Resolution presets. Sides are multiples of 16 (the VAE's 8x and the
// transformer's 2x2 patches); 848x480 is what Mochi-1 was trained at.

export const RESOLUTIONS = [
  { id: "848x480", label: "848×480 landscape (Mochi-1 native)", width: 848, height: 480 },
  { id: "480x848", label: "480×848 portrait", width: 480, height: 848 },
  { id: "640x352", label: "640×352 landscape, faster", width: 640, height: 352 },
  { id: "512x512", label: "512×512 square", width: 512, height: 512 },
  { id: "256x144", label: "256×144 quick preview", width: 256, height: 144 },
  { id: "64x64", label: "64×64 smallest (tests)", width: 64, height: 64 },
];

export function presetFor(width, height) {
  return RESOLUTIONS.find((r) => r.width === width && r.height === height)?.id || "custom";
}

// First-video drafts for a machine without a big GPU, cheapest first: the
// form opens on the largest one this deployment is expected to render within
// a minute (form_estimate.js), the smallest before anything was measured.
export const DRAFTS = [
  { width: 256, height: 144, num_frames: 13, fps: 12, num_inference_steps: 8 },
  { width: 256, height: 144, num_frames: 25, fps: 12, num_inference_steps: 16 },
  { width: 512, height: 288, num_frames: 37, fps: 24, num_inference_steps: 24 },
];
