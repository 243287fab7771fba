// DOM building and formatting helpers. Text always goes in as text nodes, never as HTML, so
// task names, results and errors cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "text") {
      el.textContent = value;
    } else {
      el.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("div", {class: "x", onclick: fn}, "text", child) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const STATES = ["pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled"]);
export const CANCELLABLE = new Set(["pending", "queued", "running"]);
export const RETRYABLE = new Set(["failed", "timed_out", "cancelled"]);

export function stateLabel(state) {
  return String(state).replace("_", " ");
}

export function badge(state, extra) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, stateLabel(state), extra ? ` · ${extra}` : null);
}

export function shortId(id) {
  return id ? String(id).slice(-8) : "";
}

export function taskTitle(task) {
  return task.name || `${task.handler} …${shortId(task.id)}`;
}

export function parseTime(iso) {
  return iso ? new Date(iso).getTime() : null;
}

export function ago(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t === null) return "—";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 1) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: d.toLocaleString() }, ago(iso));
}

export function fullTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function between(startIso, endIso) {
  const a = parseTime(startIso);
  const b = endIso ? parseTime(endIso) : null;
  if (a === null || b === null) return null;
  return Math.max(0, (b - a) / 1000);
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function rate(n) {
  return n === null || n === undefined ? "—" : `${bytes(n)}/s`;
}

export function percent(n) {
  return n === null || n === undefined ? "—" : `${Number(n).toFixed(Number(n) >= 10 ? 0 : 1)}%`;
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function number(n) {
  return Number(n || 0).toLocaleString("en-US");
}

export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

export function keyValues(rows) {
  return h(
    "dl",
    { class: "kv" },
    rows
      .filter((row) => row && row[1] !== undefined)
      .map(([key, value]) => [h("dt", {}, key), h("dd", {}, value === null || value === "" ? h("span", { class: "muted" }, "—") : value)]),
  );
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

/** Run `render` (which rebuilds `container`) without losing the keyboard's place: the element
 * that had focus, found again by its `data-focus-key`, gets it back. */
export function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  render();
  if (key) {
    const again = [...container.querySelectorAll("[data-focus-key]")].find((el) => el.dataset.focusKey === key);
    if (again) again.focus();
  }
}
