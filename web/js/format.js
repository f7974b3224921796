// How times, sizes and durations read on screen.

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function formatClock(iso) {
  return iso ? clock.format(new Date(iso)) : "";
}

export function formatDateTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : "";
}

export function formatIn(iso, now = Date.now()) {
  const s = Math.round((new Date(iso).getTime() - now) / 1000);
  if (s <= 5) return "any moment";
  if (s < 90) return `in ${s} s`;
  if (s < 90 * 60) return `in ${Math.round(s / 60)} min`;
  return `in ${(s / 3600).toFixed(1)} h`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function formatSeconds(s) {
  return `${(Math.round(s * 10) / 10).toFixed(1)} s`;
}

export function shortId(id) {
  return id.slice(0, 8);
}

// A duration as people say it: "40 s", "3 min", "1.5 h".
export function formatDuration(s) {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
