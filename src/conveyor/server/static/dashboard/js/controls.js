// The operator's controls shared by several pages: what is paused (the banner on every page, the
// queue and schedule tables), asking how long a pause lasts, and calls that need an admin token.

import { ApiError, get, post, request } from "./api.js";
import { confirmAction, toast } from "./dialogs.js";
import { h, replace, fullTime } from "./dom.js";

const DURATIONS = [
  ["", "until resumed"],
  ["900", "for 15 minutes"],
  ["3600", "for 1 hour"],
  ["86400", "for 1 day"],
];

/**
 * Run an admin call; on failure say why in a toast and resolve to null. A 403 means this
 * browser's token may not do it: say so plainly, and how to give another token.
 */
export async function adminCall(what, call) {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      toast(`Only an admin token may ${what}. The token this browser sends is not an admin's: set one with “API token” at the foot of the page.`, "error");
    } else {
      toast(`Could not ${what}: ${error.message}`, "error");
    }
    return null;
  }
}

/** Ask to pause a queue, a schedule or everything; resolves to the `until` to send ("" for
 * none), or null when called off. */
export async function askPause({ title, message, confirm }) {
  const select = h("select", { name: "pause-for", "data-testid": "pause-for" }, DURATIONS.map(([value, text]) => h("option", { value }, text)));
  const extra = h("label", { class: "field" }, h("span", {}, "Paused"), select);
  if (!(await confirmAction({ title, message, confirm, extra }))) return null;
  return select.value ? new Date(Date.now() + Number(select.value) * 1000).toISOString() : "";
}

// What is paused now, fetched at most once per poll by whichever of the banner and the page asks
// first.
let pending = null;
let fetchedAt = 0;

export function loadPauses() {
  if (!pending || Date.now() - fetchedAt > 1000) {
    fetchedAt = Date.now();
    pending = get("/pauses").then((answer) => answer.pauses);
    pending.catch(() => {
      pending = null;
    });
  }
  return pending;
}

export function forgetPauses() {
  pending = null;
}

export function pausedText(pause) {
  return pause.until ? `paused until ${fullTime(pause.until)}` : "paused until resumed";
}

function post_(path, params) {
  return request("POST", path, { params });
}

export async function pauseQueue(queue) {
  const until = await askPause({
    title: `Pause queue “${queue}”?`,
    message: "Workers lease nothing more from it, on every server; its running tasks finish, and tasks can still be submitted to it.",
    confirm: "Pause queue",
  });
  if (until === null) return false;
  const done = await adminCall(`pause queue “${queue}”`, () => post_(`/queues/${encodeURIComponent(queue)}/pause`, { until }));
  forgetPauses();
  if (done) toast(`Paused queue ${queue}`);
  return Boolean(done);
}

export async function resumeQueue(queue) {
  const done = await adminCall(`resume queue “${queue}”`, () => post(`/queues/${encodeURIComponent(queue)}/resume`));
  forgetPauses();
  if (done) toast(`Resumed queue ${queue}`);
  return Boolean(done);
}

export async function pauseSchedule(name) {
  const until = await askPause({
    title: `Pause schedule “${name}”?`,
    message: "It submits nothing until it is resumed; the firings it misses meanwhile follow its misfire policy then.",
    confirm: "Pause schedule",
  });
  if (until === null) return false;
  const done = await adminCall(`pause schedule “${name}”`, () => post_(`/schedules/${encodeURIComponent(name)}/pause`, { until }));
  forgetPauses();
  if (done) toast(`Paused schedule ${name}`);
  return Boolean(done);
}

export async function resumeSchedule(name) {
  const done = await adminCall(`resume schedule “${name}”`, () => post(`/schedules/${encodeURIComponent(name)}/resume`));
  forgetPauses();
  if (done) toast(`Resumed schedule ${name}`);
  return Boolean(done);
}

export async function pauseAll() {
  const until = await askPause({
    title: "Pause every queue?",
    message: "No worker leases anything, from any queue, on any server. Running tasks finish; submitting and schedules go on.",
    confirm: "Pause everything",
  });
  if (until === null) return false;
  const done = await adminCall("pause every queue", () => post_("/pause", { until }));
  forgetPauses();
  if (done) toast("Paused every queue");
  return Boolean(done);
}

export async function resumeAll() {
  const done = await adminCall("resume every queue", () => post("/resume"));
  forgetPauses();
  if (done) toast("Every queue leases again (queues paused on their own stay paused)");
  return Boolean(done);
}

/** The banner under the top bar: what is paused, each with its resume button. */
export function renderBanner(banner, pauses, after) {
  if (!pauses.length) {
    banner.hidden = true;
    replace(banner);
    return;
  }
  const resume = (label, action) => h("button", { type: "button", class: "secondary small-button", onclick: async () => { if (await action()) after(); } }, label);
  const items = pauses.map((p) => {
    if (p.scope === "all") return h("li", { "data-pause": "all" }, h("b", {}, "Every queue"), ` ${pausedText(p)}: nothing is leased. `, resume("Resume all", resumeAll));
    if (p.scope === "queue") return h("li", { "data-pause": `queue:${p.name}` }, "Queue ", h("a", { href: `#/tasks?queue=${encodeURIComponent(p.name)}` }, p.name), ` ${pausedText(p)}. `, resume(`Resume queue ${p.name}`, () => resumeQueue(p.name)));
    return h("li", { "data-pause": `schedule:${p.name}` }, "Schedule ", h("a", { href: "#/schedules" }, p.name), ` ${pausedText(p)}. `, resume(`Resume schedule ${p.name}`, () => resumeSchedule(p.name)));
  });
  banner.hidden = false;
  replace(banner, h("h2", { class: "sr-only" }, "Paused"), h("ul", {}, items));
}
