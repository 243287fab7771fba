// Failed: the newest failed and timed-out tasks grouped by their error, the largest groups first,
// each with "Retry all N": a dry run says first how many tasks would run again, then the bulk
// action runs in the server's background and its progress shows here until it is done.

import { get, post } from "../api.js";
import { adminCall } from "../controls.js";
import { confirmAction, toast } from "../dialogs.js";
import { h, replace, time, empty, number, keepFocus, stateLabel, taskTitle } from "../dom.js";

const PROGRESS_WAIT_S = 2;

export default function mount(root) {
  const list = h("div", { class: "failure-list", "data-testid": "failure-groups" });
  const note = h("p", { class: "hint" });
  const actions = h("div", { class: "bulk-actions", "data-testid": "bulk-actions" });
  root.append(
    h("h1", {}, "Failed tasks"),
    h("p", { class: "hint" }, "Failed and timed-out tasks grouped by their error message, the largest groups first. “Retry all” shows how many tasks would run again before it does anything."),
    actions,
    list,
    note,
  );
  let lastJson = "";
  let alive = true;

  async function refresh() {
    const answer = await get("/failures", { limit: 50 });
    note.textContent = answer.complete ? `${number(answer.scanned)} failed tasks in all.` : `The counts are those of the newest ${number(answer.scanned)} failures; there are more.`;
    const json = JSON.stringify(answer.groups);
    if (json === lastJson) {
      for (const el of list.querySelectorAll("time")) el.textContent = time(el.getAttribute("datetime")).textContent;
      return;
    }
    lastJson = json;
    if (!answer.groups.length) {
      replace(list, empty("No failed tasks. Tasks that fail or time out for good show here, grouped by their error."));
      return;
    }
    keepFocus(list, () => replace(list, answer.groups.map((group) => groupCard(group))));
  }

  function keyOf(group) {
    return JSON.stringify(group.filter);
  }

  function groupCard(group) {
    const key = keyOf(group);
    const dependency = group.error === null;
    return h(
      "article",
      { class: "panel failure", "data-error": group.error ?? "", "data-count": group.count },
      h(
        "div",
        { class: "failure-head" },
        h("span", { class: "badge state-failed", "data-testid": "failure-count" }, `${number(group.count)} task${group.count === 1 ? "" : "s"}`),
        h("span", { class: "muted" }, "last ", time(group.last_finished_at)),
        h("button", { type: "button", class: "primary small-button", "data-action": "retry-group", "data-focus-key": `retry:${key}`, onclick: () => retryAll(group) }, `Retry all ${number(group.count)}`),
      ),
      dependency
        ? h("p", { class: "failure-error muted" }, "Failed because a task they depend on failed: they run again once it does, or when retried here.")
        : group.error === ""
          ? h("p", { class: "failure-error muted" }, "Failed with no error message.")
          : h("pre", { class: "failure-error error-text" }, group.error),
    );
  }

  async function retryAll(group) {
    const ask = { action: "retry", filter: group.filter };
    const dry = await adminCall("count the tasks to retry", () => post("/tasks/bulk", { ...ask, dry_run: true }));
    if (!dry) return;
    if (!dry.estimate) {
      toast("None of these tasks can be retried now (they may have been retried already).");
      lastJson = "";
      refresh();
      return;
    }
    const states = Object.entries(dry.by_state).map(([st, n]) => `${number(n)} ${stateLabel(st)}`).join(", ");
    const sample = dry.sample.slice(0, 5).map((t) => taskTitle(t));
    const ok = await confirmAction({
      title: `Retry ${number(dry.estimate)} task${dry.estimate === 1 ? "" : "s"}?`,
      message: `The group matches ${number(dry.total)} task${dry.total === 1 ? "" : "s"} now (${states}); ${number(dry.estimate)} would run again with their retries restored.`,
      extra: sample.length ? h("p", { class: "hint", "data-testid": "dry-run-sample" }, `Among them: ${sample.join(", ")}${dry.estimate > sample.length ? ", …" : ""}`) : null,
      confirm: `Retry ${number(dry.estimate)}`,
    });
    if (!ok) return;
    const action = await adminCall("retry these tasks", () => post("/tasks/bulk", ask));
    if (!action) return;
    const what = group.error === null ? "tasks whose dependency failed" : group.error ? `“${clip(group.error, 80)}”` : "tasks with no error message";
    const box = h("div", { class: "panel bulk-progress", "data-testid": "bulk-progress", role: "status" });
    actions.prepend(box);
    let state = action;
    showProgress(box, what, state);
    while (!state.done && alive) {
      try {
        state = await get(`/bulk/${encodeURIComponent(action.id)}`, { wait: PROGRESS_WAIT_S });
      } catch (error) {
        replace(box, h("p", { class: "form-errors" }, `Lost track of the retry of ${what}: ${error.message}. It goes on in the server.`));
        return;
      }
      showProgress(box, what, state);
    }
    if (!alive) return;
    toast(`Retried ${number(state.changed)} task${state.changed === 1 ? "" : "s"}`);
    lastJson = "";
    refresh();
  }

  return {
    refresh,
    leave() {
      alive = false;
    },
  };
}

function showProgress(box, what, state) {
  const bar = h("progress", { max: Math.max(state.total, 1), value: state.changed + state.skipped, "aria-label": "Retried so far" });
  const text = state.done
    ? `Retry of ${what} done: ${number(state.changed)} retried${state.skipped ? `, ${number(state.skipped)} left as they were` : ""}.`
    : `Retrying ${what}: ${number(state.changed)} of ${number(state.total)} so far${state.error ? ` (a chunk failed: ${state.error}; trying again)` : ""}.`;
  box.dataset.done = state.done ? "true" : "false";
  replace(box, h("span", { "data-testid": "bulk-text" }, text), bar);
}

function clip(text, max) {
  const line = text.split("\n")[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
