// @ts-check
// The steps panel of the shown tab: the provisioning plan joined with the steps the run
// recorded, each with its state, its time (a live timer while running, the usual time
// before) and its log, followed live. Reads the state, writes the DOM, never requests.
// Imports views/elements.js, views/common.js, state.js and dom.js.

import { find, h, part, reconcile, setAttr, setText, show } from "../dom.js";
import { STEP_ICONS, STEP_STATUS, app, planRows, stepLogOpen, stepName } from "../state.js";
import { formatDuration, formatElapsed, formatEstimate } from "./common.js";
import { els } from "./elements.js";

/** @typedef {import("../types/workbench").Task} Task */
/** @typedef {import("../types/workbench").Tab} Tab */

/**
 * The steps panel of the shown tab: open while the tab waits on provisioning (or failed
 * there), folded into one line once the environment is ready. Each step says how it went
 * (its duration), how long it has been running (a live timer) or usually takes, and has its
 * log (what it printed, live), folded unless it failed.
 * @param {Task} task
 * @param {Tab} tab
 */
export function renderProvisioning(task, tab) {
  const sandbox = task.sandbox;
  // A pending tab on a failed sandbox waits for the next attempt's: the old steps are stale.
  const stale = tab.state === "pending_provision" && sandbox && sandbox.state !== "provisioning";
  const rows = stale ? [] : planRows(sandbox);
  show(els.provisioning, rows.length > 0);
  if (!sandbox || !rows.length) return;
  const phase = tab.state === "pending_provision" || tab.state === "error" ? "open" : "folded";
  const key = `${tab.id}|${sandbox.id}|${phase}`;
  if (app.provisioningKey !== key) {
    app.provisioningKey = key;
    els.provisioning.open = phase === "open";
  }
  const done = rows.filter((row) => row.status === "succeeded").length;
  const total = sandbox.steps.reduce((sum, step) => sum + (step.duration_ms ?? 0), 0);
  let summary = `Provisioning steps: ${done} of ${rows.length} done`;
  if (sandbox.state === "ready") summary = `Environment ready in ${formatDuration(total)} (${rows.length} steps)`;
  else if (sandbox.state === "failed") summary = `Provisioning failed after ${formatDuration(total)}`;
  if (tab.attempt > 1) summary += ` · attempt ${tab.attempt}`;
  setText(els.provisioningSummary, summary);
  reconcile(
    els.taskSteps,
    rows,
    (row) => `${sandbox.id}:${row.name}`,
    (row) => {
      const logId = `step-log-${sandbox.id}-${row.name}`;
      return h(
        "li",
        { class: "step" },
        h(
          "div",
          { class: "step-row" },
          h("span", { class: "step-icon", "aria-hidden": "true" }),
          h("span", { class: "step-name" }),
          h("span", { class: "visually-hidden step-status" }),
          h("span", { class: "step-time" }),
          h("button", { type: "button", class: "step-log-toggle", "aria-expanded": "false", "aria-controls": logId, dataset: { action: "log" } }, "Log"),
        ),
        h("pre", { class: "step-log", id: logId, tabindex: "0", hidden: true }),
      );
    },
    (li, row) => {
      const stepKey = li.dataset.key;
      li.dataset.status = row.status;
      li.dataset.name = row.name;
      setAttr(li, "aria-current", row.status === "running" ? "step" : null);
      const icon = part(li, ".step-icon");
      if (row.status === "running") {
        if (!find(icon, ".spinner")) icon.replaceChildren(h("span", { class: "spinner" }));
      } else setText(icon, STEP_ICONS[row.status] ?? "");
      setText(part(li, ".step-name"), stepName(row));
      setText(part(li, ".step-status"), `: ${STEP_STATUS[row.status] ?? row.status}`);
      renderStepTime(part(li, ".step-time"), row);
      const toggle = part(li, ".step-log-toggle");
      const pre = part(li, ".step-log");
      show(toggle, Boolean(row.step));
      const open = Boolean(row.step) && stepLogOpen(stepKey, row);
      setAttr(toggle, "aria-expanded", open ? "true" : "false");
      setAttr(toggle, "aria-label", `${open ? "Hide" : "Show"} the log of ${stepName(row)}`);
      setText(toggle, open ? "Hide log" : "Log");
      show(pre, open);
      if (open) {
        // Follows the log as it grows, unless the reader scrolled up in it.
        const following = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
        const text = row.step.log || (row.status === "running" ? "(no output yet)" : "(no output)");
        setText(pre, text);
        if (following || pre.dataset.shown !== "true") pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.shown = open ? "true" : "false";
    },
  );
}

/** Done: its duration. Running: a live timer (and the usual time). To come: the usual. */
function renderStepTime(el, row) {
  const usual = row.estimate !== null && row.estimate !== undefined ? `usually ${formatEstimate(row.estimate)}` : "";
  if (row.status === "running") {
    let timer = find(el, ".elapsed");
    if (!timer || timer.dataset.since !== row.step.started_at) {
      timer = h("span", { class: "elapsed step-timer", "aria-live": "off", dataset: { since: row.step.started_at } });
      el.replaceChildren(timer, h("span", { class: "step-usual" }));
      setText(timer, formatElapsed((Date.now() - Date.parse(row.step.started_at)) / 1000));
    }
    setText(part(el, ".step-usual"), usual ? ` · ${usual}` : "");
    return;
  }
  let text = usual;
  if (row.step) text = row.step.duration_ms !== null ? formatDuration(row.step.duration_ms) : "";
  if (el.firstElementChild || el.textContent !== text) el.textContent = text;
}
