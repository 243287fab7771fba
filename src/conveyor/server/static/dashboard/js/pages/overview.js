// Overview: tasks by state, workers alive, tasks no worker can take, throughput and queue depth
// over time, queues with their pause and resume controls.

import { get } from "../api.js";
import { lineChart } from "../charts.js";
import { loadPauses, pauseAll, pauseQueue, pausedText, resumeQueue } from "../controls.js";
import { h, replace, section, STATES, stateLabel, number, empty, keepFocus } from "../dom.js";

const LIVE = new Set(["alive", "draining"]);

const KEEP = 600;

export default function mount(root) {
  const cards = h("div", { class: "cards", "data-testid": "state-cards" });
  const throughput = h("div", { class: "chart-box", "data-testid": "throughput-chart" });
  const depth = h("div", { class: "chart-box", "data-testid": "depth-chart" });
  const queues = h("div", { class: "table-wrap", "data-testid": "queue-table" });
  const scrollHint = h("p", { class: "hint scroll-hint" }, "The table scrolls sideways: swipe or use the arrow keys for every state.");
  const pauseButton = h("button", { type: "button", class: "secondary", "data-action": "pause-all", onclick: async () => { if (await pauseAll()) refresh(); } }, "Pause every queue");
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("div", { class: "actions" }, pauseButton)),
    cards,
    h("div", { class: "grid-2" }, section("Throughput", h("p", { class: "hint" }, "Tasks finished per second, as seen by this server."), throughput), section("Queue depth", h("p", { class: "hint" }, "Tasks waiting and running, all queues."), depth)),
    section("Queues", scrollHint, queues),
  );
  let points = [];
  let intervalS = 2;
  let lastQueues = "";

  async function refresh() {
    const since = points.length ? points[points.length - 1].at : null;
    const [status, history, workers, pauses] = await Promise.all([get("/status"), get("/status/history", { since }), get("/workers"), loadPauses()]);
    intervalS = history.interval_s || intervalS;
    points = points.concat(history.points).slice(-KEEP);
    const all = pauses.find((p) => p.scope === "all");
    pauseButton.hidden = Boolean(all);
    renderCards(status, workers.workers);
    renderCharts();
    renderQueues(status, new Map(pauses.filter((p) => p.scope === "queue").map((p) => [p.name, p])));
  }

  function renderCards(status, workers) {
    // Counted from the same list as the Workers page: deregistered workers are in neither.
    const by = (state) => workers.filter((w) => w.state === state).length;
    const live = workers.filter((w) => LIVE.has(w.state)).length;
    const draining = by("draining");
    const dead = by("dead");
    const detail = [draining ? `${draining} draining` : null, `${dead} dead`].filter(Boolean).join(" · ");
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
        { class: "card", href: "#/workers", "data-testid": "workers-alive", title: "Alive: heartbeating workers, draining ones included. Dead: missed their heartbeats. Deregistered workers are not counted." },
        h("span", { class: "card-label" }, "workers alive"),
        h("span", { class: "card-value", "data-count": live }, number(live), h("small", { "data-testid": "workers-dead" }, ` · ${detail}`)),
      ),
      h(
        "div",
        {
          class: `card${status.unschedulable ? " card-warn" : ""}`,
          "data-testid": "unschedulable",
          title: "Pending and queued tasks that no live worker could ever take: none serves their queue, or none of those has what they need. A task's page says why. Counted every 10 s or so.",
        },
        h("span", { class: "card-label" }, "unschedulable"),
        h("span", { class: "card-value", "data-count": status.unschedulable || 0 }, number(status.unschedulable)),
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
      { label: "Queue depth", integer: true },
    );
  }

  function renderQueues(status, paused) {
    const json = JSON.stringify([status.queues, [...paused]]);
    if (json === lastQueues) return;
    lastQueues = json;
    const names = [...new Set([...Object.keys(status.queues), ...paused.keys()])].sort();
    if (!names.length) {
      replace(queues, empty("No tasks yet. Submit one with the Submit page, the CLI or the SDK."));
      return;
    }
    const control = (queue) => {
      const pause = paused.get(queue);
      const label = pause ? `Resume queue ${queue}` : `Pause queue ${queue}`;
      const act = async () => {
        if (await (pause ? resumeQueue(queue) : pauseQueue(queue))) {
          lastQueues = "";
          refresh();
        }
      };
      return h(
        "td",
        {},
        h(
          "div",
          { class: "queue-control" },
          pause ? h("span", { class: "badge state-cancelled", title: pausedText(pause), "data-testid": "queue-paused" }, "paused") : null,
          h("button", { type: "button", class: "secondary small-button", "data-action": pause ? "resume-queue" : "pause-queue", "data-focus-key": `queue:${queue}`, "aria-label": label, onclick: act }, pause ? "Resume" : "Pause"),
        ),
      );
    };
    const table = h(
      "table",
      { class: "table numbers sticky-first" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "queue"), STATES.map((st) => h("th", { class: "num", scope: "col" }, stateLabel(st))), h("th", { scope: "col" }, "leasing"))),
      h(
        "tbody",
        {},
        names.map((queue) =>
          h(
            "tr",
            { "data-queue": queue },
            h("th", { scope: "row" }, h("a", { href: `#/tasks?queue=${encodeURIComponent(queue)}` }, queue)),
            STATES.map((st) => {
              const n = (status.queues[queue] || {})[st] || 0;
              return h("td", { class: `num${n ? "" : " muted"}` }, n ? h("a", { href: `#/tasks?queue=${encodeURIComponent(queue)}&state=${st}`, "aria-label": `${number(n)} ${stateLabel(st)} in ${queue}` }, number(n)) : "0");
            }),
            control(queue),
          ),
        ),
      ),
    );
    const left = queues.scrollLeft; // a swipe sideways survives the live update
    keepFocus(queues, () => replace(queues, table));
    queues.scrollLeft = left;
    markScrollable(queues);
  }

  return { refresh };
}

/** A table wider than its box scrolls sideways: say so (a hint, and shadows at the cut edges) and
 * let the keyboard scroll it. */
export function markScrollable(wrap) {
  const update = () => {
    const scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    wrap.classList.toggle("scrolls", scrolls);
    wrap.classList.toggle("at-start", wrap.scrollLeft <= 1);
    wrap.classList.toggle("at-end", wrap.scrollLeft + wrap.clientWidth >= wrap.scrollWidth - 1);
    if (scrolls) {
      wrap.setAttribute("tabindex", "0");
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Queues (scrolls sideways)");
    } else {
      wrap.removeAttribute("tabindex");
      wrap.removeAttribute("role");
      wrap.removeAttribute("aria-label");
    }
  };
  if (!wrap.dataset.watched) {
    wrap.dataset.watched = "1";
    wrap.addEventListener("scroll", update, { passive: true });
    new ResizeObserver(update).observe(wrap);
  }
  requestAnimationFrame(update);
}
