// Submit a task: a form over TaskSpec's main fields, a confirmation, then the new task's page.

import { post } from "../api.js";
import { confirmAction, toast } from "../dialogs.js";
import { h, replace } from "../dom.js";

const BUILTINS = ["echo", "sleep", "fail", "sha256"];

export default function mount(root) {
  const field = (label, control, hint) => h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "hint" }, hint) : null);
  const handler = h("input", { name: "handler", required: true, list: "handler-options", placeholder: "sha256", autocomplete: "off", "aria-label": "Handler" });
  const args = h("textarea", { name: "args", rows: 2, class: "mono", placeholder: '["hello"]', "aria-label": "Arguments (JSON list)" });
  const kwargs = h("textarea", { name: "kwargs", rows: 2, class: "mono", placeholder: '{"key": "value"}', "aria-label": "Keyword arguments (JSON object)" });
  const name = h("input", { name: "name", placeholder: "optional", autocomplete: "off", pattern: "[A-Za-z0-9_.:\\-]{1,200}" });
  const queue = h("input", { name: "queue", value: "default", autocomplete: "off" });
  const priority = h("input", { name: "priority", type: "number", value: "0", step: "1" });
  const timeout = h("input", { name: "timeout_s", type: "number", min: "0", step: "any", placeholder: "none" });
  const retries = h("input", { name: "max_retries", type: "number", value: "0", min: "0", max: "100", step: "1" });
  const delay = h("input", { name: "delay_s", type: "number", min: "0", step: "any", placeholder: "0" });
  const labels = h("input", { name: "labels", placeholder: "team=data, env=dev", autocomplete: "off" });
  const errors = h("div", { class: "form-errors", role: "alert" });
  const form = h(
    "form",
    { class: "submit-form panel", novalidate: true, onsubmit: (e) => { e.preventDefault(); submit(); } },
    h("datalist", { id: "handler-options" }, BUILTINS.map((b) => h("option", { value: b }))),
    h("div", { class: "form-grid" },
      field("Handler", handler, "A registered name (echo, sleep, fail, sha256) or package.module:function."),
      field("Name", name),
      field("Arguments", args, "A JSON list; plain text is sent as one string."),
      field("Keyword arguments", kwargs, "A JSON object."),
      field("Queue", queue),
      field("Priority", priority, "Higher runs first."),
      field("Timeout (s)", timeout),
      field("Retries", retries),
      field("Start after (s)", delay),
      field("Labels", labels, "key=value, comma separated."),
    ),
    errors,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", "data-testid": "submit-task" }, "Submit task")),
  );
  root.append(h("h1", {}, "Submit a task"), form);

  function spec() {
    const out = { handler: handler.value.trim(), queue: queue.value.trim() || "default" };
    const problems = [];
    if (!out.handler) problems.push("handler: give a handler name");
    const argText = args.value.trim();
    if (argText) {
      try {
        const parsed = JSON.parse(argText);
        out.args = Array.isArray(parsed) ? parsed : [parsed];
      } catch {
        out.args = [argText];
      }
    }
    const kwText = kwargs.value.trim();
    if (kwText) {
      try {
        out.kwargs = JSON.parse(kwText);
        if (typeof out.kwargs !== "object" || Array.isArray(out.kwargs) || out.kwargs === null) throw new Error();
      } catch {
        problems.push("keyword arguments: must be a JSON object");
      }
    }
    if (name.value.trim()) out.name = name.value.trim();
    const int = (el, key) => {
      if (el.value.trim() === "") return;
      const n = Number(el.value);
      if (!Number.isInteger(n)) problems.push(`${key}: must be a whole number`);
      else out[key] = n;
    };
    int(priority, "priority");
    int(retries, "max_retries");
    for (const [el, key] of [[timeout, "timeout_s"], [delay, "delay_s"]]) {
      if (el.value.trim() === "") continue;
      const n = Number(el.value);
      if (!(n >= 0)) problems.push(`${key}: must be a positive number`);
      else if (n > 0 || key === "delay_s") out[key] = n;
    }
    if (labels.value.trim()) {
      out.labels = {};
      for (const pair of labels.value.split(",")) {
        const [k, ...v] = pair.split("=");
        if (!k.trim() || !v.length) problems.push(`labels: “${pair.trim()}” is not key=value`);
        else out.labels[k.trim()] = v.join("=").trim();
      }
    }
    return { out, problems };
  }

  async function submit() {
    const { out, problems } = spec();
    if (problems.length) {
      replace(errors, problems.map((p) => h("p", {}, p)));
      return;
    }
    replace(errors);
    const what = out.name ? `“${out.name}” (${out.handler})` : out.handler;
    if (!(await confirmAction({ title: "Submit this task?", message: `${what} goes to queue “${out.queue}”${out.args ? ` with arguments ${JSON.stringify(out.args)}` : ""}.`, confirm: "Submit" }))) return;
    try {
      const task = await post("/tasks", out);
      toast(`Submitted ${task.name || task.handler}`);
      location.hash = `#/task/${task.id}`;
    } catch (error) {
      replace(errors, h("p", {}, error.message));
    }
  }

  return { refresh: async () => {} };
}
