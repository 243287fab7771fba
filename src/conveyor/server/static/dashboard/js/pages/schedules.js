// Schedules: each with its cron expression, the task it submits, when it fires next and last,
// whether it is paused (with pause and resume), and the error of a firing that could not submit
// its task (it tries again at each firing; the other schedules go on).

import { get } from "../api.js";
import { loadPauses, pauseSchedule, pausedText, resumeSchedule } from "../controls.js";
import { h, replace, time, fullTime, empty, number, keepFocus } from "../dom.js";

export default function mount(root) {
  const list = h("div", { class: "schedule-list", "data-testid": "schedules" });
  root.append(
    h("h1", {}, "Schedules"),
    h("p", { class: "hint" }, "Added with ", h("code", {}, "conveyor schedule add"), ", a job file or the SDK. Times are shown in this browser's time zone."),
    list,
  );
  let lastJson = "";

  async function refresh() {
    const [answer, pauses] = await Promise.all([get("/schedules"), loadPauses()]);
    const paused = new Map(pauses.filter((p) => p.scope === "schedule").map((p) => [p.name, p]));
    const all = pauses.find((p) => p.scope === "all");
    const json = JSON.stringify([answer.schedules, [...paused], Boolean(all)]);
    if (json === lastJson) {
      for (const el of list.querySelectorAll("time")) el.textContent = time(el.getAttribute("datetime")).textContent;
      return;
    }
    lastJson = json;
    if (!answer.schedules.length) {
      replace(list, empty("No schedules. Add one with: conveyor schedule add NAME 'CRON' HANDLER [ARGS]"));
      return;
    }
    const sorted = [...answer.schedules].sort((a, b) => Number(Boolean(b.last_error)) - Number(Boolean(a.last_error)) || a.spec.name.localeCompare(b.spec.name));
    keepFocus(list, () => replace(list, sorted.map((schedule) => card(schedule, paused.get(schedule.spec.name), all))));
  }

  function card(schedule, pause, all) {
    const spec = schedule.spec;
    const act = async () => {
      if (await (pause ? resumeSchedule(spec.name) : pauseSchedule(spec.name))) {
        lastJson = "";
        refresh();
      }
    };
    return h(
      "article",
      { class: `panel schedule${schedule.last_error ? " has-error" : ""}`, "data-schedule": spec.name, "aria-label": `Schedule ${spec.name}` },
      h(
        "div",
        { class: "schedule-head" },
        h("h2", {}, spec.name),
        schedule.last_error ? h("span", { class: "badge state-failed", "data-testid": "schedule-failing" }, "cannot fire") : null,
        pause ? h("span", { class: "badge state-cancelled", "data-testid": "schedule-paused", title: pausedText(pause) }, "paused") : null,
        h("button", { type: "button", class: "secondary small-button", "data-action": pause ? "resume-schedule" : "pause-schedule", "data-focus-key": `pause:${spec.name}`, onclick: act }, pause ? "Resume" : "Pause"),
      ),
      schedule.last_error
        ? h(
            "div",
            { class: "schedule-error", role: "note", "data-testid": "schedule-error" },
            h("p", {}, h("b", {}, "Its last firing could not submit its task"), " (", time(schedule.last_error_at), "): it tries again at each firing."),
            h("pre", { class: "error-text" }, schedule.last_error),
          )
        : null,
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "fires"), h("dd", {}, h("code", {}, spec.cron), ` (${spec.timezone})`),
        h("dt", {}, "submits"), h("dd", {}, h("code", {}, spec.task.handler), ` to queue ${spec.task.queue || "default"}`),
        h("dt", {}, "next"), h("dd", {}, pause ? `${pausedText(pause)}; then ${fullTime(schedule.next_run_at)}` : all ? `${fullTime(schedule.next_run_at)} (fires, but every queue is paused)` : fullTime(schedule.next_run_at)),
        h("dt", {}, "last"), h("dd", {}, schedule.last_run_at ? h("span", {}, fullTime(schedule.last_run_at), " · ", time(schedule.last_run_at)) : "never"),
        h("dt", {}, "fired"), h("dd", {}, `${number(schedule.fired)} time${schedule.fired === 1 ? "" : "s"}`),
      ),
    );
  }

  return { refresh };
}
