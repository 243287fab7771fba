// Overview: tasks by state, workers alive, throughput and queue depth over time, queues.

import { get } from "../api.js";
import { lineChart } from "../charts.js";
import { h, replace, section, STATES, stateLabel, number, empty } from "../dom.js";

const KEEP = 600;

export default function mount(root) {
  const cards = h("div", { class: "cards", "data-testid": "state-cards" });
  const throughput = h("div", { class: "chart-box", "data-testid": "throughput-chart" });
  const depth = h("div", { class: "chart-box", "data-testid": "depth-chart" });
  const queues = h("div", { class: "table-wrap" });
  root.append(
    h("h1", {}, "Overview"),
    cards,
    h("div", { class: "grid-2" }, section("Throughput", h("p", { class: "hint" }, "Tasks finished per second, as seen by this server."), throughput), section("Queue depth", h("p", { class: "hint" }, "Tasks waiting and running, all queues."), depth)),
    section("Queues", queues),
  );
  let points = [];
  let intervalS = 2;

  async function refresh() {
    const since = points.length ? points[points.length - 1].at : null;
    const [status, history] = await Promise.all([get("/status"), get("/status/history", { since })]);
    intervalS = history.interval_s || intervalS;
    points = points.concat(history.points).slice(-KEEP);
    renderCards(status);
    renderCharts();
    renderQueues(status);
  }

  function renderCards(status) {
    replace(
      cards,
      STATES.map((state) =>
        h(
          "a",
          { class: `card state-card state-border-${state}`, href: `#/tasks?state=${state}`, "data-state": state },
          h("span", { class: "card-label" }, stateLabel(state)),
          h("span", { class: "card-value", "data-count": status.counts[state] || 0 }, number(status.counts[state])),
        ),
      ),
      h(
        "a",
        { class: "card", href: "#/workers", "data-testid": "workers-alive" },
        h("span", { class: "card-label" }, "workers alive"),
        h("span", { class: "card-value" }, `${status.workers_alive}`, h("small", {}, ` / ${status.workers_total}`)),
      ),
      h(
        "div",
        { class: "card" },
        h("span", { class: "card-label" }, "finished, last minute"),
        h("span", { class: "card-value" }, number(status.finished_last_minute), h("small", {}, ` · ${(status.finished_last_minute / 60).toFixed(1)}/s`)),
      ),
    );
  }

  function renderCharts() {
    const at = (p) => new Date(p.at).getTime();
    lineChart(throughput, [{ name: "finished/s", color: "#22c55e", fill: true, points: points.map((p) => [at(p), p.finished / intervalS]), format: (v) => v.toFixed(1) }], { label: "Throughput" });
    lineChart(
      depth,
      [
        { name: "queued", color: "#3b82f6", points: points.map((p) => [at(p), p.counts.queued || 0]), format: number },
        { name: "running", color: "#06b6d4", points: points.map((p) => [at(p), p.counts.running || 0]), format: number },
        { name: "pending", color: "#94a3b8", points: points.map((p) => [at(p), p.counts.pending || 0]), format: number },
      ],
      { label: "Queue depth" },
    );
  }

  function renderQueues(status) {
    const names = Object.keys(status.queues).sort();
    if (!names.length) {
      replace(queues, empty("No tasks yet. Submit one with the Submit page, the CLI or the SDK."));
      return;
    }
    replace(
      queues,
      h(
        "table",
        { class: "table numbers" },
        h("thead", {}, h("tr", {}, h("th", {}, "queue"), STATES.map((st) => h("th", { class: "num" }, stateLabel(st))))),
        h(
          "tbody",
          {},
          names.map((queue) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: `#/tasks?queue=${encodeURIComponent(queue)}` }, queue)),
              STATES.map((st) => {
                const n = status.queues[queue][st] || 0;
                return h("td", { class: `num${n ? "" : " muted"}` }, n ? h("a", { href: `#/tasks?queue=${encodeURIComponent(queue)}&state=${st}` }, number(n)) : "0");
              }),
            ),
          ),
        ),
      ),
    );
  }

  return { refresh };
}
