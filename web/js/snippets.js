// The form's request as a command to paste: curl, and the Python client.
// A key is never written out: its place is named, since a snippet gets shared.

import { h } from "./dom.js";
import { getKey } from "./key.js";

function curl(origin, request) {
  const auth = getKey() ? ` \\\n  -H "Authorization: Bearer $MOCHI_API_KEY"` : "";
  const body = JSON.stringify(request).replace(/'/g, "'\\''");
  return `curl -s -X POST ${origin}/v1/jobs -H 'content-type: application/json'${auth} \\\n  -d '${body}'`;
}

function python(origin, request) {
  const { prompt, seed, ...rest } = request;
  const args = Object.entries(rest).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  if (seed !== undefined) args.push(`seed=${seed}`);
  const key = getKey() ? `, api_key=os.environ["MOCHI_API_KEY"]` : "";
  return [
    getKey() ? "import os\n" : "",
    "from mochi_cli.client import MochiClient\n\n",
    `with MochiClient(${JSON.stringify(origin)}${key}) as mochi:\n`,
    `    job = mochi.submit(${JSON.stringify(prompt)}, ${args.join(", ")})\n`,
    `    mochi.download(mochi.wait(job.id).id, "video.mp4")\n`,
  ].join("");
}

export function requestSnippets(origin, request) {
  if (!request) return [h("p", { class: "muted" }, "Fix the fields above to see the request.")];
  const block = (label, text) => h("div", { class: "snippet" },
    h("div", { class: "snippet-head" }, h("span", {}, label),
      h("button", { type: "button", class: "copy", onclick: (e) => copy(e.currentTarget, text) }, `Copy ${label}`)),
    h("pre", {}, h("code", {}, text)));
  const body = { ...request };
  if (body.seed !== undefined) body.seed = Number(body.seed) <= Number.MAX_SAFE_INTEGER ? Number(body.seed) : body.seed;
  return [block("curl", curl(origin, body).replace(/"seed":"(\d+)"/, '"seed":$1')), block("Python", python(origin, request))];
}

async function copy(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select the text to copy";
  }
}
