// The job list's status filter and prompt search in the URL ("#/?status=failed&q=boat",
// so a filtered view can be bookmarked, shared and gone back to), and the counts
// per status. Search and counts are this page's, over the jobs the list has
// loaded (the API lists by status, not by prompt): the counts say so.

import { $ } from "./dom.js";

const list = () => $("#job-list");

function query() {
  const at = location.hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : location.hash.slice(at + 1));
}

// The home view's address with the current filters, for links back to it.
export function homeHash() {
  const params = new URLSearchParams();
  for (const box of $("#status-filter").querySelectorAll("input:checked")) params.append("status", box.id.slice(7));
  const q = $("#job-search").value.trim();
  if (q) params.set("q", q);
  const text = params.toString();
  return text ? `#/?${text}` : "#/";
}

export function setUpFilters() {
  const search = $("#job-search");
  // On a phone the list is below the whole form. The hash is the router's, so
  // the jump scrolls and moves the keyboard itself instead of following "#jobs-title".
  $("#jump-to-jobs").addEventListener("click", (e) => {
    e.preventDefault();
    $("#jobs-title").scrollIntoView();
    $("#jobs-title").focus({ preventScroll: true });
  });
  const fromUrl = () => {
    const params = query();
    const wanted = new Set(params.getAll("status"));
    let changed = false;
    for (const box of $("#status-filter").querySelectorAll("input[type=checkbox]")) {
      const on = wanted.has(box.id.slice(7));
      if (box.checked !== on) {
        box.checked = on;
        changed = true;
      }
    }
    search.value = params.get("q") || "";
    // The list reads the boxes on "change" and reloads.
    if (changed) $("#status-filter").dispatchEvent(new Event("change"));
    apply();
  };
  const toUrl = () => {
    if (location.hash.startsWith("#/jobs/")) return;
    history.replaceState(null, "", homeHash());
  };
  $("#status-filter").addEventListener("change", toUrl);
  search.addEventListener("input", () => {
    toUrl();
    apply();
  });
  addEventListener("hashchange", () => {
    if (!location.hash.startsWith("#/jobs/")) fromUrl();
  });
  new MutationObserver(apply).observe(list(), { childList: true, subtree: true, attributes: true,
                                                attributeFilter: ["data-status"] });
  fromUrl();
}

function apply() {
  const q = $("#job-search").value.trim().toLowerCase();
  const counts = {};
  let shown = 0;
  const rows = [...list().children];
  for (const li of rows) {
    const prompt = li.querySelector(".prompt")?.textContent.toLowerCase() || "";
    const hit = !q || prompt.includes(q);
    if (li.dataset.search !== (hit ? "hit" : "miss")) li.dataset.search = hit ? "hit" : "miss";
    if (!hit) continue;
    shown += 1;
    counts[li.dataset.status] = (counts[li.dataset.status] || 0) + 1;
  }
  const parts = Object.entries(counts).map(([status, n]) => `${n} ${status}`);
  const what = q ? `${shown} of ${rows.length} loaded jobs match` : `${rows.length} jobs loaded`;
  $("#job-counts").textContent = rows.length ? `${what}${parts.length ? `: ${parts.join(" · ")}` : ""}` : "";
}
