// One place that says what is wrong with the connection to the API, and
// clears itself once the API answers again.

import { onApiError, onApiSuccess } from "./api.js";
import { $ } from "./dom.js";

export function setUpBanner() {
  const banner = $("#banner");
  const text = $("#banner-text");
  const keyButton = $("#banner-key");
  const show = (message, keyProblem) => {
    text.textContent = message;
    keyButton.hidden = !keyProblem;
    banner.hidden = false;
    banner.dataset.kind = keyProblem ? "auth" : "down";
  };
  onApiError((err) => {
    if (err.kind === "unreachable") {
      show(`Cannot reach the API at ${location.origin}. Retrying by itself; jobs already submitted keep running.`);
    } else if (err.kind === "auth") {
      const why = err.status === 401 ? "needs a valid API key" : "refused this API key for that";
      show(`The API ${why} (HTTP ${err.status}${err.problem.detail ? `: ${err.problem.detail}` : ""}).`, true);
    } else {
      show(`The API answered HTTP ${err.status}: ${err.message}. Retrying by itself.`);
    }
  });
  onApiSuccess(() => {
    banner.hidden = true;
  });
  keyButton.addEventListener("click", () => {
    const details = $("#key-details");
    details.open = true;
    $("#api-key").focus();
  });
  return { clear: () => (banner.hidden = true) };
}
