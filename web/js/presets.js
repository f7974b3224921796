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
