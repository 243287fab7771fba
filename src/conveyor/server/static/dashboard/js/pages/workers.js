// Workers, grouped by the host they run on: each host's CPU/RAM/disk/GPU gauges and history once
// (every worker of a host reports the same host figures), then its workers with state, last
// heartbeat, running tasks and the buttons that drain or stop them.

import { get, post } from "../api.js";
import { gauge, lineChart } from "../charts.js";
import { adminCall } from "../controls.js";
import { confirmAction, toast } from "../dialogs.js";
import { h, replace, time, bytes, rate, percent, empty, shortId, keepFocus, number } from "../dom.js";

const KEEP = 600;
const LIVE = new Set(["alive", "draining"]);

export default function mount(root) {
  const summary = h("p", { class: "hint", "data-testid": "worker-summary" });
  const hosts = h("div", { class: "hosts", "data-testid": "hosts" });
  const others = h("div", { class: "table-wrap" });
  const showDead = h("input", { type: "checkbox", name: "dead" });
  showDead.addEventListener("change", () => refresh());
  root.append(
    h("h1", {}, "Workers"),
    summary,
    hosts,
    h("section", { class: "panel" }, h("label", { class: "check" }, showDead, " Show dead workers"), others),
  );
  let serverHistory = [];
  const workerHistory = new Map();
  let since = null;

  async function refresh() {
    const [list, monitor] = await Promise.all([get("/workers"), get("/monitor", { since })]);
    merge(monitor);
    const live = list.workers.filter((w) => LIVE.has(w.state));
    const dead = list.workers.filter((w) => !LIVE.has(w.state));
    const draining = live.filter((w) => w.state === "draining").length;
    summary.textContent = `${number(live.length)} live (${number(live.length - draining)} alive, ${number(draining)} draining) · ${number(dead.length)} dead (missed their heartbeats). Deregistered workers are not listed.`;
    keepFocus(hosts, () => replace(hosts, hostGroups(monitor.server, live).map((group) => hostPanel(group))));
    replace(others, showDead.checked ? otherTable(dead) : h("p", { class: "hint" }, `${dead.length} dead.`));
  }

  function merge(monitor) {
    serverHistory = serverHistory.concat(monitor.server_history).slice(-KEEP);
    for (const [id, points] of Object.entries(monitor.worker_history)) {
      workerHistory.set(id, (workerHistory.get(id) || []).concat(points).slice(-KEEP));
    }
    const stamps = [...monitor.server_history, ...Object.values(monitor.worker_history).flat()].map((p) => p.at);
    for (const at of stamps) if (!since || new Date(at) > new Date(since)) since = at;
  }

  /** Hosts in order (the server's first), each with its workers and the freshest figures. */
  function hostGroups(server, live) {
    const groups = new Map();
    const serverHost = server.host || "server";
    groups.set(serverHost, { host: serverHost, server: true, metrics: server, history: serverHistory, workers: [] });
    for (const w of [...live].sort((a, b) => a.name.localeCompare(b.name))) {
      const group = groups.get(w.host) || { host: w.host, server: false, metrics: null, history: [], workers: [], seen: "" };
      group.workers.push(w);
      if (!group.server && Object.keys(w.metrics || {}).length && w.last_seen_at > (group.seen || "")) {
        group.metrics = w.metrics;
        group.history = workerHistory.get(w.id) || [];
        group.seen = w.last_seen_at;
      }
      groups.set(w.host, group);
    }
    return [...groups.values()];
  }

  function hostPanel(group) {
    const m = group.metrics;
    const drainable = group.workers.filter((w) => w.state === "alive");
    return h(
      "section",
      { class: "panel host", "data-host": group.host, "aria-label": `Host ${group.host}` },
      h(
        "div",
        { class: "host-head" },
        h("h2", {}, group.host),
        h("span", { class: "muted" }, [group.server ? "the server" : null, `${group.workers.length} worker${group.workers.length === 1 ? "" : "s"}`, m && m.cpu_count ? `${m.cpu_count} cores` : null, m && m.load_avg ? `load ${m.load_avg.map((v) => v.toFixed(2)).join(" ")}` : null].filter(Boolean).join(" · ")),
        drainable.length > 1 ? h("button", { type: "button", class: "secondary small-button", "data-action": "drain-host", "data-focus-key": `drain-host:${group.host}`, onclick: () => drainHost(group.host, drainable) }, `Drain all ${drainable.length}`) : null,
      ),
      m && Object.keys(m).length ? [gauges(m), io(m), historyCharts(group.history, group.host)] : h("p", { class: "hint" }, "No figures yet: they come with the first heartbeat."),
      group.workers.length ? h("div", { class: "worker-grid" }, group.workers.map((w) => workerCard(w))) : h("p", { class: "hint" }, "No worker runs on this host."),
    );
  }

  function workerCard(w) {
    const running = w.running || [];
    const tasks = `${running.length} running task${running.length === 1 ? "" : "s"}`;
    const act = (verb) => async () => {
      const plans = {
        drain: { title: `Drain worker “${w.name}”?`, message: `It leases nothing more, finishes its ${tasks}, then exits. It hears this at its next heartbeat.`, confirm: "Drain worker" },
        stop: { title: `Stop worker “${w.name}”?`, message: `It hands its ${tasks} back at once (they run again elsewhere, without spending a retry) and exits.`, confirm: "Stop worker", danger: true },
      };
      if (!(await confirmAction(plans[verb]))) return;
      const done = await adminCall(`${verb} worker “${w.name}”`, () => post(`/workers/${verb}`, { ids: [w.id] }));
      if (done) toast(`${verb === "drain" ? "Draining" : "Stopping"} ${w.name}`);
      refresh();
    };
    const note = w.hand_back ? "stopping: handing its tasks back" : w.state === "draining" ? "draining: finishing its tasks, then exits" : null;
    return h(
      "article",
      { class: "worker", "data-worker-id": w.id, "data-worker-name": w.name, "aria-label": `Worker ${w.name}` },
      h("div", { class: "worker-head" }, h("h3", {}, w.name), h("span", { class: `badge wstate-${w.state}`, "data-state": w.state }, w.state)),
      note ? h("p", { class: "worker-note", "data-testid": "worker-note" }, note) : null,
      h(
        "div",
        { class: "worker-facts" },
        h("span", {}, `pid ${w.pid}`),
        h("span", {}, "heartbeat ", time(w.last_seen_at)),
        h("span", {}, h("b", { "data-testid": "slots" }, `${running.length}/${w.concurrency}`), " slots busy"),
        h("span", {}, "queues ", w.queues.join(", ")),
      ),
      running.length ? h("div", { class: "running" }, "running: ", running.map((id) => h("a", { href: `#/task/${id}`, class: "chip mono", "aria-label": `task …${shortId(id)}` }, `…${shortId(id)}`))) : null,
      h(
        "div",
        { class: "actions" },
        w.state === "alive" ? h("button", { type: "button", class: "secondary small-button", "data-action": "drain", "data-focus-key": `drain:${w.id}`, onclick: act("drain") }, "Drain") : null,
        w.hand_back ? null : h("button", { type: "button", class: "danger small-button", "data-action": "stop", "data-focus-key": `stop:${w.id}`, onclick: act("stop") }, "Stop"),
      ),
    );
  }

  async function drainHost(host, workers) {
    const ok = await confirmAction({
      title: `Drain every worker on ${host}?`,
      message: `${workers.length} workers (${workers.map((w) => w.name).join(", ")}) lease nothing more, finish their running tasks, then exit.`,
      confirm: "Drain them",
    });
    if (!ok) return;
    const done = await adminCall(`drain the workers of ${host}`, () => post("/workers/drain", { host }));
    if (done) toast(`Draining ${done.workers.length} workers on ${host}`);
    refresh();
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

function historyCharts(points, host) {
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
  requestAnimationFrame(() => lineChart(box, series, { yMax: 100, unit: "%", height: 130, label: `CPU and memory history of ${host}` }));
  return box;
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
