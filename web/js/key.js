// The API key lives in this browser's localStorage only; an empty key means
// a deployment without keys.

const STORAGE = "mochi-serve.api-key";
const listeners = [];
let memory = ""; // used when storage is disabled (private mode, policies)

export function getKey() {
  try {
    return localStorage.getItem(STORAGE) || memory;
  } catch {
    return memory;
  }
}

export function setKey(key) {
  memory = key;
  try {
    if (key) localStorage.setItem(STORAGE, key);
    else localStorage.removeItem(STORAGE);
  } catch {
    // Kept in memory only: this page still uses it until a reload.
  }
  listeners.forEach((fn) => fn(key));
}

export function onKeyChange(fn) {
  listeners.push(fn);
}
