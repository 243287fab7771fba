// One task: state and actions, why it is not running (pending and queued tasks), spec, timing,
// result, error with traceback, attempts as a timeline with their captured output, and its
// dependencies up and down as a graph.

import { get, post, del, ApiError } from "../api.js";
import { confirmAction, toast } from "../dialogs.js";
import { drawDag } from "../dag.js";
import {
  h, replace, badge, section, keyValues, pretty, fullTime, time, duration, between, parseTime,
  taskTitle, CANCELLABLE, RETRYABLE, empty, stateLabel, shortId,
} from "../dom.js";

export default function mount(root, route) {
  const id = route.id;
  const head = h("div", { class: "page-head" });
  const why = h("section", { class: "panel why", "data-testid": "why", "aria-label": "Why it is not running", hidden: true });
  const body = h("div", { class: "task-body" });
  const graph = h("div", { class: "dag-wrap", "data-testid": "lineage" });
  const graphPanel = section("Dependencies", h("p", { class: "hint" }, "Two levels up (what it waits for) and down (what waits for it). Click a task to open it."), graph);
  root.append(head, why, body, graphPanel);
  let lastJson = "";
  let lastWhy = "";
  let lastGraph = "";
  let gone = false;

  async function refresh() {
    if (gone) return;
    let task;
    try {
      task = await get(`/tasks/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        gone = true;
        replace(head, h("h1", {}, "Task not found"));
        replace(body, empty(`There is no task ${id}: it may have been removed.`), h("p", {}, h("a", { href: "#/tasks" }, "All tasks")));
        graphPanel.remove();
        return;
      }
      throw error;
    }
    const json = JSON.stringify(task);
    if (json !== lastJson) {
      lastJson = json;
      render(task);
    } else {
      for (const el of root.querySelectorAll("time")) el.textContent = time(el.getAttribute("datetime")).textContent;
    }
    await refreshWhy(task);
    const lineage = await get(`/tasks/${encodeURIComponent(id)}/graph`, { depth: 2 });
    const graphJson = JSON.stringify(lineage);
    if (graphJson !== lastGraph) {
      lastGraph = graphJson;
      if (lineage.nodes.length > 1) {
        replace(graph, drawDag(lineage.nodes, lineage.edges, { highlight: id, current: "page", href: (n) => `#/task/${n.id}`, vertical: narrow(graph) }), lineage.truncated ? h("p", { class: "hint" }, "More tasks lie beyond; open the workflow to see them all.") : null);
      } else {
        replace(graph, empty("No dependencies and no dependents."));
      }
    }
  }

  /** For a pending or queued task, the server's answer to "why is it not running?". */
  async function refreshWhy(task) {
    if (task.state !== "pending" && task.state !== "queued") {
      why.hidden = true;
      lastWhy = "";
      return;
    }
    let answer;
    try {
      answer = await get(`/tasks/${encodeURIComponent(id)}/why`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return; // removed meanwhile
      throw error;
    }
    const json = JSON.stringify(answer);
    if (json === lastWhy) return;
    lastWhy = json;
    why.hidden = false;
    replace(why, whyLines(answer));
  }

  async function act(verb, task) {
    const title = taskTitle(task);
    const plans = {
      cancel: { title: "Cancel this task?", message: `“${title}” is ${stateLabel(task.state)}. ${task.state === "running" ? "Its process is killed at the worker's next heartbeat. " : ""}Tasks that depend on it will fail.`, confirm: "Cancel task", danger: true },
      retry: { title: "Retry this task?", message: `“${title}” runs again with its retries restored; tasks that failed because of it wait for it again.`, confirm: "Retry task" },
      remove: { title: "Remove this task?", message: `“${title}” and its attempts are deleted from the database. This cannot be undone.`, confirm: "Remove task", danger: true },
    };
    if (!(await confirmAction(plans[verb]))) return;
    try {
      if (verb === "remove") {
        await del(`/tasks/${encodeURIComponent(id)}`);
        toast(`Removed ${title}`);
        location.hash = "#/tasks";
        return;
      }
      const updated = await post(`/tasks/${encodeURIComponent(id)}/${verb}`);
      toast(`${verb === "cancel" ? "Cancelled" : "Retrying"} ${title}: now ${stateLabel(updated.state)}`);
    } catch (error) {
      toast(error.message, "error");
    }
    await refresh();
  }

  function render(task) {
    const actions = h("div", { class: "actions" });
    if (CANCELLABLE.has(task.state)) actions.append(h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: () => act("cancel", task) }, "Cancel"));
    if (RETRYABLE.has(task.state)) actions.append(h("button", { type: "button", class: "primary", "data-action": "retry", onclick: () => act("retry", task) }, "Retry"));
    if (task.state !== "running") actions.append(h("button", { type: "button", class: "secondary", "data-action": "remove", onclick: () => act("remove", task) }, "Remove"));
    if (task.depends_on.length || task.dependents.length) actions.append(h("a", { class: "button secondary", href: `#/workflow/${task.id}` }, "Workflow"));
    replace(
      head,
      h(
        "div",
        { class: "title-block" },
        h("h1", {}, taskTitle(task), " ", h("span", { "data-testid": "task-state" }, badge(task.state, task.reason ? task.reason.replaceAll("_", " ") : null))),
        h("div", { class: "sub mono" }, task.id),
      ),
      actions,
    );
    const last = task.attempt_log.length ? task.attempt_log[task.attempt_log.length - 1] : null;
    const traceback = last && last.traceback;
    replace(
      body,
      h(
        "div",
        { class: "grid-2" },
        section(
          "Spec",
          keyValues([
            ["handler", h("code", {}, task.handler)],
            ["args", h("pre", { class: "json small" }, pretty(task.args))],
            ["kwargs", Object.keys(task.kwargs).length ? h("pre", { class: "json small" }, pretty(task.kwargs)) : null],
            ["queue", h("a", { href: `#/tasks?queue=${encodeURIComponent(task.queue)}` }, task.queue)],
            ["priority", String(task.priority)],
            ["timeout", task.timeout_s ? duration(task.timeout_s) : null],
            ["retries", `${task.retries_used} used of ${task.max_retries}`],
            ["resources", Object.keys(task.resources).length ? Object.entries(task.resources).map(([k, v]) => `${k}=${v}`).join(", ") : null],
            ["labels", Object.keys(task.labels).length ? Object.entries(task.labels).map(([k, v]) => h("a", { class: "chip", href: `#/tasks?label=${encodeURIComponent(`${k}=${v}`)}` }, `${k}=${v}`)) : null],
            ["key", task.key ? h("code", {}, task.key) : null],
            ["start after", task.run_at ? fullTime(task.run_at) : null],
          ]),
        ),
        section(
          "Timing",
          keyValues([
            ["created", h("span", {}, fullTime(task.created_at), " · ", time(task.created_at))],
            ["started", task.started_at ? fullTime(task.started_at) : null],
            ["finished", task.finished_at ? fullTime(task.finished_at) : null],
            ["waited", duration(between(task.created_at, task.started_at))],
            ["ran for", task.attempt_log.length > 1 ? `${duration(runSeconds(task))} in ${task.attempt_log.length} attempts` : duration(runSeconds(task))],
            ["first start to end", task.attempt_log.length > 1 && task.finished_at ? h("span", { title: "Retries' waits included" }, duration(between(task.started_at, task.finished_at))) : undefined],
            ["attempts", String(task.attempts)],
            ["worker", workerOf(task) ? h("a", { href: "#/workers", class: "mono" }, workerOf(task)) : null],
            ["lease until", task.lease_expires_at ? fullTime(task.lease_expires_at) : null],
          ]),
        ),
      ),
      task.state === "succeeded" || task.result !== null ? section("Result", h("pre", { class: "json", "data-testid": "task-result" }, pretty(task.result))) : null,
      task.error ? section("Error", h("p", { class: "error-text", "data-testid": "task-error" }, task.error), traceback ? h("pre", { class: "traceback" }, traceback) : null) : null,
      section("Attempts", task.attempt_log.length ? [timeline(task.attempt_log), attemptList(task.attempt_log)] : empty("Not started yet.")),
    );
  }

  return { refresh };
}

function whyLines(answer) {
  const [first, ...rest] = answer.reasons;
  const line = (reason) => h("span", { "data-code": reason.code }, sentence(reason.message), reason.tasks.length ? [" ", reason.tasks.map((t) => h("a", { href: `#/task/${t}`, class: "chip mono", "aria-label": `task …${shortId(t)}` }, `…${shortId(t)}`))] : null);
  return [
    h("h2", {}, "Why it is not running"),
    h("p", { class: "why-main", "data-testid": "why-main" }, line(first)),
    rest.length ? h("ul", { class: "why-more" }, rest.map((reason) => h("li", {}, line(reason)))) : null,
    answer.unschedulable
      ? h("p", { class: "why-unschedulable", "data-testid": "why-unschedulable" }, h("span", { class: "badge state-failed" }, "unschedulable"), " No live worker could ever take it: it waits until one that can registers.")
      : null,
  ];
}

/** The server's sentence, capitalised, with its UTC timestamps in this browser's time. */
function sentence(message) {
  const local = message.replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)/g, (iso) => new Date(iso).toLocaleString());
  return `${local.charAt(0).toUpperCase()}${local.slice(1)}.`;
}

function workerOf(task) {
  const last = task.attempt_log[task.attempt_log.length - 1];
  return task.worker_id || (last && last.worker_id) || null;
}

const OUTCOME_STATE = { running: "running", succeeded: "succeeded", failed: "failed", timed_out: "timed_out", cancelled: "cancelled", crashed: "failed", lost: "pending", handed_back: "pending" };

/** Attempts on one time axis, in HTML (text at the page's size on any screen): a row per
 * attempt, its bar placed and sized in percent of the span from the first start to the last end. */
function timeline(attempts) {
  const now = Date.now();
  const starts = attempts.map((a) => parseTime(a.started_at));
  const ends = attempts.map((a) => parseTime(a.finished_at) ?? now);
  const t0 = Math.min(...starts);
  const t1 = Math.max(...ends, t0 + 1);
  const at = (t) => (100 * (t - t0)) / (t1 - t0);
  return h(
    "div",
    { class: "timeline", "data-testid": "timeline" },
    h(
      "ol",
      { class: "timeline-rows", "aria-label": "Attempts over time" },
      attempts.map((a, i) => {
        const outcome = a.outcome || "running";
        const state = OUTCOME_STATE[outcome] || "failed";
        const bar = h("span", { class: `timeline-bar state-bg-${state}`, title: `attempt ${a.number}: ${outcome.replace("_", " ")}, ${duration((ends[i] - starts[i]) / 1000)}` });
        bar.style.left = `${at(starts[i])}%`;
        bar.style.width = `max(3px, ${at(ends[i]) - at(starts[i])}%)`;
        return h(
          "li",
          { class: "timeline-row" },
          h("span", { class: "timeline-label" }, `#${a.number}`),
          h("span", { class: "timeline-track" }, bar),
          h("span", { class: "sr-only" }, `${outcome.replace("_", " ")}, ${duration((ends[i] - starts[i]) / 1000)}`),
        );
      }),
    ),
    h("div", { class: "timeline-axis" }, h("span", {}, new Date(t0).toLocaleTimeString()), h("span", {}, `${duration((t1 - t0) / 1000)} later`)),
  );
}

/** Seconds spent running: the attempts' own durations added up (not the waits between them). */
function runSeconds(task) {
  const now = new Date().toISOString();
  let total = 0;
  let counted = 0;
  for (const a of task.attempt_log) {
    const took = between(a.started_at, a.finished_at || (a.outcome ? null : now));
    if (took !== null) {
      total += took;
      counted += 1;
    }
  }
  return counted ? total : null;
}

function attemptList(attempts) {
  return h(
    "ol",
    { class: "attempts", "data-testid": "attempts" },
    [...attempts].reverse().map((a) =>
      h(
        "li",
        { "data-outcome": a.outcome || "running" },
        h(
          "div",
          { class: "attempt-head" },
          h("b", {}, `#${a.number}`),
          h("span", { class: `badge state-${OUTCOME_STATE[a.outcome || "running"] || "running"}` }, (a.outcome || "running").replace("_", " ")),
          h("span", { class: "muted" }, fullTime(a.started_at)),
          h("span", {}, duration(between(a.started_at, a.finished_at))),
          a.worker_id ? h("span", { class: "mono muted" }, `worker …${a.worker_id.slice(-8)}`) : null,
        ),
        a.error ? h("p", { class: "error-text" }, a.error) : null,
        a.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", { class: "traceback" }, a.traceback)) : null,
        a.stdout_tail ? h("details", { open: true }, h("summary", {}, "stdout"), h("pre", { class: "output", "data-testid": "stdout" }, a.stdout_tail)) : null,
        a.stderr_tail ? h("details", { open: true }, h("summary", {}, "stderr"), h("pre", { class: "output stderr" }, a.stderr_tail)) : null,
        !a.stdout_tail && !a.stderr_tail && a.outcome ? h("p", { class: "muted small" }, "No output captured.") : null,
      ),
    ),
  );
}

function narrow(el) {
  return (el.clientWidth || window.innerWidth) < 560;
}
