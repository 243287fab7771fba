// The dashboard's shell: hash routes (#/tasks, #/task/ID, ...) and the live-update loop. Each page
// module exports mount(root, route) -> {refresh}; the shell calls refresh() at once and then every
// POLL_MS while the tab is visible, one call at a time, and shows whether the server answers.
// Each poll also reads what is paused, for the banner under the top bar.

import { askToken } from "./dialogs.js";
import { setToken, token } from "./api.js";
import { loadPauses, renderBanner } from "./controls.js";
import { h, replace } from "./dom.js";
import overview from "./pages/overview.js";
import tasks from "./pages/tasks.js";
import task from "./pages/task.js";
import workflows from "./pages/workflows.js";
import workflow from "./pages/workflow.js";
import workers from "./pages/workers.js";
import submit from "./pages/submit.js";
import failed from "./pages/failed.js";
import schedules from "./pages/schedules.js";
import limits from "./pages/limits.js";

const POLL_MS = 1500;
const PAGES = { "": overview, tasks, task, workflows, workflow, workers, submit, failed, schedules, limits };
const NAV = { "": "overview", task: "tasks", workflow: "workflows" };

let current = null;
let generation = 0;
let busy = false;
let timer = null;

export function parseRoute(hash = location.hash) {
  const text = hash.replace(/^#\/?/, "");
  const [path, search = ""] = text.split("?");
  const [name = "", ...rest] = path.split("/").filter(Boolean);
  return { name, id: rest.length ? decodeURIComponent(rest.join("/")) : null, params: new URLSearchParams(search) };
}

function setLive(ok, message) {
  const live = document.getElementById("live");
  if (!live) return;
  live.className = ok ? "live live-ok" : "live live-down";
  live.textContent = ok ? "live" : "offline";
  live.title = ok ? `Updated ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000} s` : `Cannot reach the server: ${message}`;
}

async function refresh() {
  if (!current || busy) return;
  const mine = generation;
  busy = true;
  try {
    await Promise.all([current.refresh(), refreshBanner()]);
    if (mine === generation) setLive(true);
  } catch (error) {
    if (mine === generation) setLive(false, error.message || String(error));
  } finally {
    busy = false;
  }
}

let bannerJson = "";

async function refreshBanner() {
  const pauses = await loadPauses();
  const json = JSON.stringify(pauses);
  if (json === bannerJson) return;
  bannerJson = json;
  renderBanner(document.getElementById("pause-banner"), pauses, () => {
    bannerJson = "";
    refresh();
  });
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    if (!document.hidden) await refresh();
    schedule();
  }, POLL_MS);
}

function navigate() {
  const route = parseRoute();
  const Page = PAGES[route.name];
  generation += 1;
  busy = false;
  if (current && current.leave) current.leave();
  const main = document.getElementById("main");
  const active = NAV[route.name] ?? route.name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!Page) {
    current = null;
    replace(main, h("section", { class: "panel" }, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview"))));
    return;
  }
  const root = h("div", { class: `page page-${route.name || "overview"}` });
  replace(main, root);
  current = Page(root, route);
  window.scrollTo(0, 0);
  refresh();
  schedule();
}

window.addEventListener("hashchange", navigate);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
document.getElementById("token-button").addEventListener("click", async () => {
  const given = await askToken(token() ? "Replace the token this browser sends (leave empty and cancel to keep it)." : "Set the token this browser sends to the API.");
  if (given !== null) {
    setToken(given);
    refresh();
  }
});
navigate();
