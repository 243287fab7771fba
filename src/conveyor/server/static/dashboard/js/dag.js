// A dependency graph drawn left to right (top to bottom on narrow screens): layers by longest
// path from the roots, the order inside a layer by a few barycentre sweeps (fewer crossings),
// edges as curves with arrows. The tasks are HTML links placed over an SVG of the edges.

import { h, s, stateLabel } from "./dom.js";

const NODE_W = 168;
const NODE_W_NARROW = 146;
const NODE_H = 44;
const GAP_X = 64;
const GAP_Y = 16;
const MARGIN = 12;

function layers(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n.id, []]));
  const children = new Map(nodes.map((n) => [n.id, []]));
  for (const [from, to] of edges) {
    if (parents.has(from) && parents.has(to)) {
      parents.get(to).push(from);
      children.get(from).push(to);
    }
  }
  const indegree = new Map(nodes.map((n) => [n.id, parents.get(n.id).length]));
  const level = new Map();
  const queue = nodes.filter((n) => indegree.get(n.id) === 0).map((n) => n.id);
  for (const id of queue) level.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const child of children.get(id)) {
      level.set(child, Math.max(level.get(child) ?? 0, level.get(id) + 1));
      indegree.set(child, indegree.get(child) - 1);
      if (indegree.get(child) === 0) queue.push(child);
    }
  }
  for (const n of nodes) if (!level.has(n.id)) level.set(n.id, 0); // never for a DAG; be safe
  const columns = [];
  for (const n of nodes) {
    const l = level.get(n.id);
    (columns[l] ||= []).push(n.id);
  }
  return { columns: columns.map((c) => c || []), parents, children };
}

function order(columns, parents, children) {
  const position = new Map();
  const index = () => columns.forEach((col) => col.forEach((id, i) => position.set(id, i)));
  index();
  const centre = (ids) => (ids.length ? ids.reduce((sum, id) => sum + position.get(id), 0) / ids.length : null);
  for (let sweep = 0; sweep < 4; sweep += 1) {
    const down = sweep % 2 === 0;
    const range = down ? columns.map((_, i) => i).slice(1) : columns.map((_, i) => i).reverse().slice(1);
    for (const c of range) {
      const keyed = columns[c].map((id, i) => {
        const b = centre(down ? parents.get(id) : children.get(id));
        return [b === null ? i : b, i, id];
      });
      keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      columns[c] = keyed.map((k) => k[2]);
      index();
    }
  }
}

/**
 * The graph as HTML: a list of the tasks (links when `href` is given), placed over an <svg> of the
 * edges. The tasks are real links with real text, so that a keyboard reaches each one and a screen
 * reader reads them in dependency order with what each waits for; the drawing of the edges is
 * hidden from screen readers, which get the same facts from the list.
 * nodes: [{id, name, handler, state}], edges: [[dependency, dependent]].
 * options: {highlight: id, href: (node) => url, vertical: top to bottom instead of left to right,
 *           current: the aria-current value of the highlighted task ("page" or "true")}
 */
export function drawDag(nodes, edges, options = {}) {
  const { columns, parents, children } = layers(nodes, edges);
  order(columns, parents, children);
  const vertical = Boolean(options.vertical);
  const nodeW = vertical ? NODE_W_NARROW : NODE_W; // two side by side on a phone
  const stepLayer = vertical ? NODE_H + GAP_X / 2 : nodeW + GAP_X; // between layers
  const stepRank = vertical ? nodeW + GAP_Y : NODE_H + GAP_Y; // within a layer
  const widest = Math.max(1, ...columns.map((c) => c.length));
  const place = new Map();
  columns.forEach((col, c) => {
    const offset = ((widest - col.length) * stepRank) / 2;
    col.forEach((id, r) => {
      const along = MARGIN + c * stepLayer;
      const across = MARGIN + offset + r * stepRank;
      place.set(id, vertical ? { x: across, y: along } : { x: along, y: across });
    });
  });
  const layerSpan = MARGIN * 2 + (columns.length - 1) * stepLayer + (vertical ? NODE_H : nodeW);
  const rankSpan = MARGIN * 2 + (widest - 1) * stepRank + (vertical ? nodeW : NODE_H);
  const width = vertical ? rankSpan : layerSpan;
  const height = vertical ? layerSpan : rankSpan;
  const svg = s("svg", { class: "dag-edges", width, height, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true", focusable: "false" });
  svg.append(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))),
  );
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const [from, to] of edges) {
    const a = place.get(from);
    const b = place.get(to);
    if (!a || !b) continue;
    const state = byId.get(from).state;
    let d;
    if (vertical) {
      const x1 = a.x + nodeW / 2;
      const y1 = a.y + NODE_H;
      const x2 = b.x + nodeW / 2;
      const y2 = b.y - 2;
      const bend = Math.max(12, (y2 - y1) / 2);
      d = `M ${x1} ${y1} C ${x1} ${y1 + bend}, ${x2} ${y2 - bend}, ${x2} ${y2}`;
    } else {
      const x1 = a.x + nodeW;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x - 2;
      const y2 = b.y + NODE_H / 2;
      const bend = Math.max(24, (x2 - x1) / 2);
      d = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
    }
    svg.append(s("path", { d, class: `edge edge-${state}`, "marker-end": "url(#arrow)", "data-edge": `${from}>${to}` }));
  }
  const titleOf = (node) => node.name || node.handler;
  const list = h("ul", { class: "dag-nodes", "aria-label": `${nodes.length} tasks, in dependency order` });
  for (const id of columns.flat()) {
    const node = byId.get(id);
    const p = place.get(id);
    const title = titleOf(node);
    const waits = parents.get(id).map((parent) => titleOf(byId.get(parent)));
    const current = node.id === options.highlight;
    const attrs = {
      class: `node state-node-${node.state}${current ? " highlight" : ""}`,
      "data-task-id": node.id,
      "data-state": node.state,
      "data-name": node.name || "",
      title: `${title} (${stateLabel(node.state)})\n${node.id}`,
      "aria-current": current ? options.current || "true" : null,
    };
    const content = [
      h("span", { class: "node-title" }, title),
      h("span", { class: "node-sub" }, `${stateLabel(node.state)} · ${node.handler}`),
      waits.length ? h("span", { class: "sr-only" }, `, waits for ${waits.join(", ")}`) : null,
    ];
    const box = options.href ? h("a", { ...attrs, href: options.href(node) }, content) : h("div", attrs, content);
    const item = h("li", {}, box);
    item.style.left = `${p.x}px`;
    item.style.top = `${p.y}px`;
    box.style.width = `${nodeW}px`;
    box.style.height = `${NODE_H}px`;
    list.append(item);
  }
  const graph = h("div", { class: "dag", role: "group", "aria-label": `Dependency graph of ${nodes.length} tasks` }, svg, list);
  graph.style.width = `${width}px`;
  graph.style.height = `${height}px`;
  return graph;
}
