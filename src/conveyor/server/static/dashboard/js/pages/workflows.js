// Workflows: recent groups of tasks linked by dependencies (a batch or a job file), newest
// activity first, each with its progress by state.

import { get } from "../api.js";
import { stateBar } from "../charts.js";
import { h, replace, time, STATES, stateLabel, empty, number } from "../dom.js";

export default function mount(root) {
  const list = h("div", { class: "workflow-list", "data-testid": "workflow-list" });
  const note = h("p", { class: "hint" });
  const open = h("input", { name: "task", placeholder: "task id", "aria-label": "Task id", autocomplete: "off", class: "mono" });
  root.append(
    h("h1", {}, "Workflows"),
    h(
      "section",
      { class: "panel" },
      h(
        "p",
        { class: "hint" },
        "A workflow is a group of tasks linked by dependencies, such as a job file or a batch. It is named by the tasks' ",
        h("code", {}, "workflow"),
        " label, else by the job file (the prefix of its tasks' keys), else by its first task.",
      ),
      h(
        "form",
        { class: "inline-form", onsubmit: (e) => { e.preventDefault(); if (open.value.trim()) location.hash = `#/workflow/${open.value.trim()}`; } },
        h("label", {}, "Open the workflow of a task ", open),
        h("button", { type: "submit", class: "secondary" }, "Open"),
      ),
      list,
      note,
    ),
  );
  let lastJson = "";

  async function refresh() {
    const answer = await get("/workflows", { limit: 50 });
    note.textContent = `Among the newest ${number(answer.scanned)} tasks.`;
    const json = JSON.stringify(answer.workflows);
    if (json === lastJson) {
      for (const el of list.querySelectorAll("time")) el.textContent = time(el.getAttribute("datetime")).textContent;
      return;
    }
    lastJson = json;
    if (!answer.workflows.length) {
      replace(list, empty("No workflows among recent tasks. Submit a batch or a job file with dependencies (conveyor apply FILE.yaml)."));
      return;
    }
    replace(
      list,
      answer.workflows.map((w) => {
        const done = (w.counts.succeeded || 0) + (w.counts.failed || 0) + (w.counts.timed_out || 0) + (w.counts.cancelled || 0);
        return h(
          "a",
          { class: "workflow-row", href: `#/workflow/${w.id}`, "data-workflow-id": w.id },
          h("div", { class: "workflow-name" }, h("b", {}, w.name), h("span", { class: "sub mono" }, `…${w.id.slice(-8)}`)),
          stateBar(w.counts),
          h(
            "div",
            { class: "workflow-meta" },
            h("span", {}, `${done} of ${w.tasks} done${w.complete ? "" : "+"}`),
            h("span", { class: "muted" }, STATES.filter((st) => w.counts[st]).map((st) => `${w.counts[st]} ${stateLabel(st)}`).join(" · ")),
            h("span", { class: "muted" }, "updated ", time(w.updated_at)),
          ),
        );
      }),
    );
  }

  return { refresh };
}
