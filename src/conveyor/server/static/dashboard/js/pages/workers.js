// Workers: the server's host and every live worker, with state, last heartbeat, running tasks,
// CPU/RAM/disk/GPU gauges and the history the server keeps of them.

import { get } from "../api.js";
import { gauge, lineChart } from "../charts.js";
import { h, replace, time, bytes, rate, percent, empty, shortId, section } from "../dom.js";

const KEEP = 600;
const LIVE = new Set(["alive", "draining"]);

export default function mount(root) {
  const host = h("div", { "data-testid": "server-host" });
  const cards = h("div", { class: "worker-grid", "data-testid": "worker-cards" });
  const others = h("div", { class: "table-wrap" });
  const showAll = h("input", { type: "checkbox", name: "all" });
  showAll.addEventListener("change", () => refresh());
  root.append(
    h("h1", {}, "Workers"),
    section("Server host", host),
    h("h2", { class: "section-title" }, "Live workers"),
    cards,
    h("section", { class: "panel" }, h("label", { class: "check" }, showAll, " Show dead and deregistered workers"), others),
  );
  let serverHistory = [];
  const workerHistory = new Map();
  let since = null;

  async function refresh() {
    const [list, monitor] = await Promise.all([get("/workers"), get("/monitor", { since })]);
    merge(monitor);
    renderHost(monitor.server);
    const live = list.workers.filter((w) => LIVE.has(w.state));
    if (!live.length) {
      replace(cards, empty("No live workers. Start one with: conveyor worker --server URL"));
    } else {
      replace(cards, live.map((w) => workerCard(w, workerHistory.get(w.id) || [])));
    }
    const rest = list.workers.filter((w) => !LIVE.has(w.state));
    replace(others, showAll.checked ? otherTable(rest) : h("p", { class: "hint" }, `${rest.length} dead or deregistered.`));
  }

  function merge(monitor) {
    serverHistory = serverHistory.concat(monitor.server_history).slice(-KEEP);
    for (const [id, points] of Object.entries(monitor.worker_history)) {
      workerHistory.set(id, (workerHistory.get(id) || []).concat(points).slice(-KEEP));
    }
    const stamps = [...monitor.server_history, ...Object.values(monitor.worker_history).flat()].map((p) => p.at);
    for (const at of stamps) if (!since || new Date(at) > new Date(since)) since = at;
  }

  function renderHost(server) {
    replace(
      host,
      h(
        "div",
        { class: "host" },
        h("div", { class: "host-head" }, h("b", {}, server.host || "server"), h("span", { class: "muted" }, ` · ${server.cpu_count || "?"} cores · load ${(server.load_avg || []).map((v) => v.toFixed(2)).join(" ") || "—"}`)),
        gauges(server),
        io(server),
        historyCharts(serverHistory),
      ),
    );
  }

  return { refresh };
}

function gauges(m) {
  const gpus = Array.isArray(m.gpus) ? m.gpus : [];
  return h(
    "div",
    { class: "gauges" },
    gauge("CPU", m.cpu_percent, coreBars(m.cpu_per_core_percent)),
    gauge("RAM", m.memory_percent, m.memory_total_bytes ? `${bytes(m.memory_used_bytes)} of ${bytes(m.memory_total_bytes)}` : null),
    gauge("Disk", m.disk_percent, m.disk_total_bytes ? `${bytes(m.disk_used_bytes)} of ${bytes(m.disk_total_bytes)}` : null),
    gpus.length
      ? gpus.map((g) => gauge(`GPU ${g.index}`, g.utilization_percent, `${g.name} · memory ${bytes(g.memory_used_bytes)} of ${bytes(g.memory_total_bytes)}`))
      : h("div", { class: "gauge gauge-none", "data-gauge": "gpu" }, h("div", { class: "gauge-head" }, h("span", {}, "GPU"), h("b", {}, "none")), h("div", { class: "gauge-detail" }, "no NVIDIA GPU found")),
  );
}

function coreBars(cores) {
  if (!Array.isArray(cores) || !cores.length) return null;
  const wrap = h("span", { class: "cores", title: `per core: ${cores.map((c) => `${Math.round(c)}%`).join(" ")}` });
  for (const c of cores) {
    const fill = h("b", {});
    fill.style.height = `${Math.max(0, Math.min(100, c))}%`;
    wrap.append(h("i", {}, fill));
  }
  return wrap;
}

function io(m) {
  return h(
    "div",
    { class: "io" },
    h("span", {}, "disk read ", h("b", {}, rate(m.disk_read_bytes_per_s))),
    h("span", {}, "write ", h("b", {}, rate(m.disk_write_bytes_per_s))),
    h("span", {}, "net in ", h("b", {}, rate(m.net_recv_bytes_per_s))),
    h("span", {}, "out ", h("b", {}, rate(m.net_sent_bytes_per_s))),
  );
}

function historyCharts(points) {
  const box = h("div", { class: "chart-box small", "data-testid": "history-chart" });
  const at = (p) => new Date(p.at).getTime();
  const series = [
    { name: "CPU", color: "#3b82f6", points: points.map((p) => [at(p), p.cpu_percent]), format: percent },
    { name: "RAM", color: "#a855f7", points: points.map((p) => [at(p), p.memory_percent]), format: percent },
  ];
  if (points.some((p) => p.gpu_percent !== null && p.gpu_percent !== undefined)) {
    series.push({ name: "GPU", color: "#22c55e", points: points.map((p) => [at(p), p.gpu_percent]), format: percent });
  }
  // Drawn once the box is in the page, so that it takes the width it is given.
  requestAnimationFrame(() => lineChart(box, series, { yMax: 100, unit: "%", height: 130, label: "CPU and memory history" }));
  return box;
}

function workerCard(w, history) {
  const m = w.metrics || {};
  const running = w.running || [];
  return h(
    "article",
    { class: "panel worker", "data-worker-id": w.id, "data-worker-name": w.name },
    h("div", { class: "worker-head" }, h("h3", {}, w.name), h("span", { class: `badge wstate-${w.state}`, "data-state": w.state }, w.state)),
    h(
      "div",
      { class: "worker-facts" },
      h("span", {}, `${w.host} · pid ${w.pid}`),
      h("span", {}, "heartbeat ", time(w.last_seen_at)),
      h("span", {}, h("b", { "data-testid": "slots" }, `${running.length}/${w.concurrency}`), " slots busy"),
      h("span", {}, "queues ", w.queues.join(", ")),
    ),
    running.length ? h("div", { class: "running" }, "running: ", running.map((id) => h("a", { href: `#/task/${id}`, class: "chip mono" }, `…${shortId(id)}`))) : null,
    Object.keys(m).length ? [gauges(m), io(m), historyCharts(history)] : h("p", { class: "hint" }, "No metrics yet: they come with the first heartbeat."),
  );
}

function otherTable(workers) {
  if (!workers.length) return empty("None.");
  return h(
    "table",
    { class: "table" },
    h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "state"), h("th", { class: "hide-sm" }, "host"), h("th", {}, "last heartbeat"), h("th", { class: "hide-sm" }, "id"))),
    h("tbody", {}, workers.map((w) => h("tr", {}, h("td", {}, w.name), h("td", {}, h("span", { class: `badge wstate-${w.state}` }, w.state)), h("td", { class: "hide-sm" }, w.host), h("td", {}, time(w.last_seen_at)), h("td", { class: "hide-sm mono" }, w.id)))),
  );
}
