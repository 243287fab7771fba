// Task list: filters (state, queue, handler, label, text) and cursor pagination. Each page is one
// API call with the API's cursor, so it costs the same on a million tasks as on ten; the text
// search looks at a bounded number of tasks per call and continues with the cursor.

import { get, ApiError } from "../api.js";
import { h, replace, badge, time, duration, between, STATES, stateLabel, taskTitle, empty, number } from "../dom.js";

const PAGE_SIZE = 50;
const SEARCH_SCAN = 5000; // tasks looked at per search page: ~50 ms on SQLite, whatever the size
const FIELDS = ["state", "queue", "handler", "label", "q"];

export default function mount(root, route) {
  const filters = Object.fromEntries(FIELDS.map((f) => [f, route.params.get(f) || ""]));
  filters.label = shownLabel(filters.label);
  let cursors = [null];
  let lastJson = "";
  let nextCursor = null;

  const input = (name, attrs) => {
    const el = h("input", { name, value: filters[name], autocomplete: "off", ...attrs });
    el.addEventListener("input", debounce(() => setFilter(name, el.value.trim()), 350));
    return el;
  };
  const stateSelect = h(
    "select",
    { name: "state", "aria-label": "State" },
    h("option", { value: "" }, "all states"),
    STATES.map((st) => h("option", { value: st, selected: filters.state === st }, stateLabel(st))),
  );
  stateSelect.addEventListener("change", () => setFilter("state", stateSelect.value));
  const queueList = h("datalist", { id: "queue-options" });
  const form = h(
    "form",
    { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("label", {}, h("span", {}, "State"), stateSelect),
    h("label", {}, h("span", {}, "Queue"), input("queue", { list: "queue-options", placeholder: "any", "aria-label": "Queue" })),
    h("label", {}, h("span", {}, "Handler"), input("handler", { placeholder: "any", "aria-label": "Handler" })),
    h("label", {}, h("span", {}, "Label"), input("label", { placeholder: "key=value", pattern: "[^=:]+[=:].*", "aria-label": "Label", title: "key=value, as in the submit form and the CLI" })),
    h("label", { class: "grow" }, h("span", {}, "Search"), input("q", { type: "search", placeholder: "name or id", "aria-label": "Search by name or id" })),
    queueList,
  );
  const table = h("div", { class: "table-wrap", "data-testid": "task-table" });
  const note = h("p", { class: "hint" });
  const newer = h("button", { type: "button", class: "secondary", onclick: () => turn(-1) }, "← Newer");
  const older = h("button", { type: "button", class: "secondary", onclick: () => turn(1) }, "Older →");
  const pageLabel = h("span", { class: "muted" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Tasks"), h("a", { class: "button primary", href: "#/submit" }, "Submit a task")),
    h("section", { class: "panel" }, form, table, h("div", { class: "pager" }, newer, pageLabel, older), note),
  );
  get("/status").then(
    (status) => replace(queueList, Object.keys(status.queues).sort().map((q) => h("option", { value: q }))),
    () => {},
  );

  function setFilter(name, value) {
    if (filters[name] === value) return;
    filters[name] = value;
    const search = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/tasks${search ? `?${search}` : ""}`);
    cursors = [null];
    refresh();
  }

  function turn(step) {
    if (step > 0 && nextCursor) cursors.push(nextCursor);
    if (step < 0 && cursors.length > 1) cursors.pop();
    refresh();
  }

  async function refresh() {
    const cursor = cursors[cursors.length - 1];
    const params = {
      state: filters.state || null,
      queue: filters.queue || null,
      handler: filters.handler || null,
      label: apiLabel(filters.label),
      limit: PAGE_SIZE,
      cursor,
    };
    let page;
    try {
      page = filters.q ? await get("/search/tasks", { ...params, text: filters.q, scan: SEARCH_SCAN }) : await get("/tasks", params);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 422) throw error;
      lastJson = "";
      replace(table, h("p", { class: "form-errors" }, `These filters are not valid: ${error.message}`));
      return; // the server answered: a mistake in a filter is not “offline”
    }
    nextCursor = page.next_cursor;
    newer.disabled = cursors.length <= 1;
    older.disabled = !nextCursor;
    pageLabel.textContent = `page ${cursors.length}`;
    note.textContent = filters.q ? `Searched ${number(page.scanned)} tasks${page.next_cursor ? "; “Older” searches further back" : ""}.` : "";
    const json = JSON.stringify(page.tasks.map((t) => [t.id, t.state, t.attempts, t.updated_at]));
    if (json === lastJson && table.firstChild) {
      for (const el of table.querySelectorAll("time")) el.textContent = time(el.getAttribute("datetime")).textContent;
      return;
    }
    lastJson = json;
    renderTable(page.tasks);
  }

  function renderTable(tasks) {
    if (!tasks.length) {
      replace(table, empty(cursors.length > 1 ? "No more tasks." : "No task matches these filters."));
      return;
    }
    replace(
      table,
      h(
        "table",
        { class: "table tasks" },
        h("thead", {}, h("tr", {}, h("th", {}, "task"), h("th", {}, "state"), h("th", { class: "hide-sm" }, "handler"), h("th", { class: "hide-sm" }, "queue"), h("th", { class: "num hide-sm" }, "attempts"), h("th", {}, "created"), h("th", { class: "num", title: "From its first start to its end, waits between retries included" }, "took"))),
        h(
          "tbody",
          {},
          tasks.map((t) =>
            h(
              "tr",
              { "data-task-id": t.id, "data-state": t.state, onclick: (e) => { if (!e.target.closest("a")) location.hash = `#/task/${t.id}`; } },
              h("td", {}, h("a", { href: `#/task/${t.id}`, class: "task-link" }, taskTitle(t)), h("div", { class: "sub mono" }, t.id)),
              h("td", {}, badge(t.state)),
              h("td", { class: "hide-sm mono" }, t.handler),
              h("td", { class: "hide-sm" }, t.queue),
              h("td", { class: "num hide-sm" }, t.attempts),
              h("td", {}, time(t.created_at)),
              h("td", { class: "num" }, duration(between(t.started_at, t.finished_at))),
            ),
          ),
        ),
      ),
    );
  }

  return { refresh };
}

/** A label filter as the page shows it: `key=value`, as the submit form and the CLI write labels
 * (`key:value`, the API's form, is accepted too, from old links). */
export function shownLabel(text) {
  const match = /^([^=:]+)[=:](.*)$/.exec(text || "");
  return match ? `${match[1].trim()}=${match[2].trim()}` : text || "";
}

/** The same filter as the API's `label` parameter wants it: `key:value`; null until complete. */
export function apiLabel(text) {
  const match = /^([^=:]+)[=:](.*)$/.exec(text || "");
  return match && match[1].trim() ? `${match[1].trim()}:${match[2].trim()}` : null;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
