// One workflow drawn as a DAG coloured by state; it updates live as its tasks run.

import { get, ApiError } from "../api.js";
import { drawDag } from "../dag.js";
import { stateBar } from "../charts.js";
import { h, replace, STATES, stateLabel, empty, number } from "../dom.js";

export default function mount(root, route) {
  const id = route.id;
  const title = h("h1", {}, "Workflow");
  const summary = h("div", { class: "workflow-summary" });
  const graph = h("div", { class: "dag-wrap big", "data-testid": "workflow-dag" });
  root.append(
    h("div", { class: "page-head" }, title, h("a", { class: "button secondary", href: "#/workflows" }, "All workflows")),
    h("section", { class: "panel" }, summary, graph, legend()),
  );
  let lastJson = "";

  async function refresh() {
    let flow;
    try {
      flow = await get(`/workflows/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        replace(summary, empty(`There is no task ${id}.`));
        graph.replaceChildren();
        return;
      }
      throw error;
    }
    const json = JSON.stringify(flow);
    if (json === lastJson) return;
    lastJson = json;
    const counts = {};
    for (const node of flow.nodes) counts[node.state] = (counts[node.state] || 0) + 1;
    title.textContent = flow.name ? `Workflow: ${flow.name}` : "Workflow";
    replace(
      summary,
      h("p", { "data-testid": "workflow-counts" }, `${number(flow.nodes.length)} tasks${flow.truncated ? " shown (the workflow is larger)" : ""}: `, STATES.filter((st) => counts[st]).map((st) => `${counts[st]} ${stateLabel(st)}`).join(" · ")),
      stateBar(counts),
    );
    replace(graph, drawDag(flow.nodes, flow.edges, { highlight: id, href: (n) => `#/task/${n.id}`, vertical: narrow(graph) }));
  }

  return { refresh };
}

function legend() {
  return h("div", { class: "legend" }, STATES.map((st) => h("span", { class: "legend-item" }, h("i", { class: `dot state-bg-${st}` }), stateLabel(st))));
}

function narrow(el) {
  return (el.clientWidth || window.innerWidth) < 560;
}
