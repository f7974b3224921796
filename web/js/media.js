// Images and clips of a job (previews, posters, thumbnail clips) in an <img>
// or a <video>, which cannot send an Authorization header: without a key the
// element loads the API's URL itself; with one, the bytes are fetched with the
// key and shown from memory (the blob URL is let go when the element changes).

import { ApiError, authHeaders } from "./api.js";
import { getKey } from "./key.js";

const blobs = new WeakMap();

function forget(el) {
  const old = blobs.get(el);
  if (old) URL.revokeObjectURL(old);
  blobs.delete(el);
}

// Resolves true once `el` shows `url`, false if it could not (a 404 or 409:
// nothing there yet, or any more).
export async function showMedia(el, url) {
  if (!getKey()) {
    const loaded = new Promise((resolve) => {
      const ok = el.tagName === "VIDEO" ? "loadeddata" : "load";
      el.addEventListener(ok, () => resolve(true), { once: true });
      el.addEventListener("error", () => resolve(false), { once: true });
    });
    el.src = url;
    return loaded;
  }
  let resp;
  try {
    resp = await fetch(url, { headers: authHeaders() });
  } catch {
    throw new ApiError("unreachable", 0, null);
  }
  if (!resp.ok) return false;
  const blobUrl = URL.createObjectURL(await resp.blob());
  forget(el);
  blobs.set(el, blobUrl);
  el.src = blobUrl;
  return true;
}

export function dropMedia(el) {
  forget(el);
  el.removeAttribute("src");
}

// A new image for `url`, put in place of `current` only once it has loaded,
// so a preview never flashes empty between two steps. Resolves the image
// shown, or null if `url` had nothing or `current` went meanwhile (a newer
// image, or a new view, took its place).
export async function swapImage(current, url, alt, className) {
  const next = new Image();
  next.alt = alt;
  next.className = className;
  if (!(await showMedia(next, url).catch(() => false)) || !current.isConnected) {
    forget(next);
    return null;
  }
  current.replaceWith(next);
  forget(current);
  return next;
}
