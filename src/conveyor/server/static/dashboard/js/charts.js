// Small SVG charts drawn by hand: time-series lines, gauges and stacked state bars.

import { h, s, replace, STATES, stateLabel, number } from "./dom.js";

const PAD = { left: 44, right: 12, top: 10, bottom: 22 };

/**
 * Ticks for an axis from 0 to at least `max`: a step of 1, 2 or 5 times a power of ten, so that
 * there are at most `most` steps; whole steps only when the values are counts (no half tasks).
 * Returns {top, step}.
 */
export function niceTicks(max, { integer = false, most = 5 } = {}) {
  const value = max > 0 ? max : 1;
  const raw = value / most;
  const exp = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * exp;
  for (const m of [1, 2, 5]) {
    if (m * exp >= raw) {
      step = m * exp;
      break;
    }
  }
  if (integer) step = Math.max(1, Math.round(step));
  return { top: Math.ceil(value / step - 1e-9) * step, step };
}

function shortNumber(v) {
  if (v >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)}`;
}

/**
 * Draw a time-series chart into `container`.
 * series: [{name, color, points: [[timeMs, value], ...], format?}]
 * options: {yMax (fixed top, e.g. 100 for percents), spanMs (x range ending now), height, unit,
 *           integer (the values are counts: whole ticks only)}
 */
export function lineChart(container, series, options = {}) {
  const width = Math.max(240, Math.floor(container.clientWidth || 600));
  const height = options.height || 170;
  const now = options.now || Date.now();
  // The x axis spans the data there is (at least a minute, at most `spanMs`), ending now.
  const firstT = Math.min(...series.flatMap((line) => line.points.map(([t]) => t)), now);
  const spanMs = Math.min(options.spanMs || 5 * 60 * 1000, Math.max(60 * 1000, now - firstT));
  const x0 = now - spanMs;
  const all = series.flatMap((line) => line.points.filter(([t]) => t >= x0).map(([, v]) => v)).filter((v) => v !== null && v !== undefined);
  const ticks = options.yMax ? { top: options.yMax, step: options.yMax / 4 } : niceTicks(Math.max(...all, options.minMax || 1), { integer: Boolean(options.integer) });
  const top = ticks.top;
  const innerW = width - PAD.left - PAD.right;
  const innerH = height - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - x0) / spanMs) * innerW;
  const y = (v) => PAD.top + innerH - (Math.min(v, top) / top) * innerH;
  const svg = s("svg", {
    class: "chart",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": options.label || series.map((line) => line.name).join(", "),
  });
  const steps = Math.round(top / ticks.step);
  for (let i = 0; i <= steps; i += 1) {
    const v = ticks.step * i;
    const yy = y(v);
    svg.append(
      s("line", { x1: PAD.left, x2: width - PAD.right, y1: yy, y2: yy, class: "grid" }),
      s("text", { x: PAD.left - 6, y: yy + 4, class: "axis", "text-anchor": "end" }, `${shortNumber(v)}${options.unit || ""}`),
    );
  }
  for (const fraction of [1, 0.5, 0]) {
    const ago = (spanMs * fraction) / 1000;
    const text = fraction === 0 ? "now" : ago < 120 ? `−${Math.round(ago)} s` : `−${+(ago / 60).toFixed(1)} min`;
    svg.append(s("text", { x: x(now - ago * 1000), y: height - 5, class: "axis", "text-anchor": fraction === 1 ? "start" : fraction === 0 ? "end" : "middle" }, text));
  }
  let drawn = 0;
  for (const line of series) {
    const pts = line.points.filter(([t, v]) => t >= x0 && v !== null && v !== undefined);
    if (!pts.length) continue;
    drawn += pts.length;
    const coords = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    if (line.fill) {
      const first = x(pts[0][0]).toFixed(1);
      const last = x(pts[pts.length - 1][0]).toFixed(1);
      svg.append(s("polygon", { points: `${first},${y(0)} ${coords} ${last},${y(0)}`, fill: line.color, "fill-opacity": 0.12, stroke: "none" }));
    }
    svg.append(s("polyline", { points: coords, fill: "none", stroke: line.color, "stroke-width": 2, "stroke-linejoin": "round", "data-series": line.name, "data-points": pts.length }));
  }
  if (!drawn) {
    svg.append(s("text", { x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle" }, "collecting data…"));
  }
  const legend = h(
    "div",
    { class: "legend" },
    series.map((line) => {
      const last = [...line.points].reverse().find(([, v]) => v !== null && v !== undefined);
      const value = last ? (line.format ? line.format(last[1]) : shortNumber(last[1])) : "—";
      return h("span", { class: "legend-item" }, h("i", { class: "dot", "data-color": line.color }), `${line.name} `, h("b", {}, value));
    }),
  );
  for (const dot of legend.querySelectorAll("i.dot")) dot.style.background = dot.dataset.color;
  replace(container, svg, legend);
}

/** A horizontal gauge: label, figure, a bar coloured by level. */
export function gauge(label, value, detail) {
  const pct = value === null || value === undefined ? null : Math.max(0, Math.min(100, Number(value)));
  const level = pct === null ? "none" : pct >= 90 ? "high" : pct >= 70 ? "mid" : "low";
  const fill = h("span", { class: `gauge-fill level-${level}` });
  fill.style.width = `${pct ?? 0}%`;
  return h(
    "div",
    { class: "gauge", "data-gauge": label.toLowerCase(), "data-value": pct ?? "" },
    h("div", { class: "gauge-head" }, h("span", {}, label), h("b", {}, pct === null ? "—" : `${pct.toFixed(pct >= 10 ? 0 : 1)}%`)),
    h("div", { class: "gauge-bar" }, fill),
    detail ? h("div", { class: "gauge-detail" }, detail) : null,
  );
}

/** A bar split by task state, proportional to the counts. */
export function stateBar(counts) {
  const total = STATES.reduce((sum, st) => sum + (counts[st] || 0), 0);
  const bar = h("div", { class: "state-bar", role: "img", "aria-label": STATES.filter((st) => counts[st]).map((st) => `${counts[st]} ${stateLabel(st)}`).join(", ") || "no tasks" });
  for (const st of STATES) {
    const n = counts[st] || 0;
    if (!n) continue;
    const part = h("span", { class: `state-bg-${st}`, title: `${number(n)} ${stateLabel(st)}` });
    part.style.width = `${(100 * n) / total}%`;
    bar.append(part);
  }
  return bar;
}
