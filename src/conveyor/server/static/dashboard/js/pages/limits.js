// Limits: each concurrency or rate limit with its rule, the tasks running with one of its keys now,
// and the queued tasks it is holding back. Limits are set with `conveyor limit set`, the SDK or a
// job file; this page shows where they bind, so that a task waiting on one is explained here too.

import { get } from "../api.js";
import { h, replace, empty, number } from "../dom.js";

export default function mount(root) {
  const table = h("div", { class: "table-wrap", "data-testid": "limits" });
  root.append(
    h("h1", {}, "Limits"),
    h("p", { class: "hint" }, "Set with ", h("code", {}, "conveyor limit set NAME --concurrency N --rate R --per-s S"), ", the SDK or a job file. Each key of a limit (", h("code", {}, "tenant:acme"), ") is held to the rule on its own."),
    h("section", { class: "panel" }, table),
  );
  let lastJson = "";

  async function refresh() {
    const answer = await get("/limits");
    const json = JSON.stringify(answer.limits);
    if (json === lastJson) return;
    lastJson = json;
    if (!answer.limits.length) {
      replace(table, empty("No limits. Set one with: conveyor limit set NAME --concurrency N"));
      return;
    }
    const sorted = [...answer.limits].sort((a, b) => b.held - a.held || a.name.localeCompare(b.name));
    replace(
      table,
      h(
        "table",
        { class: "table limits" },
        h("thead", {}, h("tr", {}, h("th", {}, "limit"), h("th", {}, "rule, per key"), h("th", { class: "num" }, "running"), h("th", { class: "num", title: "Queued tasks that a lease skipped because one of this limit's keys was full" }, "held back"))),
        h(
          "tbody",
          {},
          sorted.map((limit) =>
            h(
              "tr",
              { "data-limit": limit.name, "data-held": limit.held },
              h("th", { scope: "row", class: "mono" }, limit.name),
              h("td", {}, rule(limit)),
              h("td", { class: "num" }, number(limit.running)),
              h("td", { class: "num" }, limit.held ? h("span", { class: "badge state-queued" }, number(limit.held)) : "0"),
            ),
          ),
        ),
      ),
    );
  }

  return { refresh };
}

/** The rule in words, as `conveyor limit list` says it. */
export function rule(limit) {
  if (limit.concurrency === 0 || limit.rate === 0) return "holds every task back";
  const parts = [];
  if (limit.concurrency !== null) parts.push(`at most ${number(limit.concurrency)} running`);
  if (limit.rate !== null) parts.push(`at most ${number(limit.rate)} started per ${limit.per_s} s`);
  return parts.join(", ");
}
