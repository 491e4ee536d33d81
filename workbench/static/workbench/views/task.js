// @ts-check
// The shown task: its heading, the tab strip (with the title field of a tab being renamed)
// and the shown tab's pane: its state block (a failure in plain words, with Retry and
// Details), the repository form of a failed tab, then the steps, transcript, composer and
// model, drawn by their own views. Reads the state, writes the DOM, never requests.
// Imports the other views, state.js and dom.js.

import { find, h, part, reconcile, setAttr, setText, show } from "../dom.js";
import {
  TAB_STATES,
  app,
  currentStep,
  describeFailure,
  planRows,
  sandboxSummary,
  stepName,
} from "../state.js";
import { runningBadge, showRunning, tickElapsed } from "./common.js";
import { clearComposerTab, renderComposer, renderModel } from "./composer.js";
import { els } from "./elements.js";
import { renderProvisioning } from "./provisioning.js";
import { renderTranscript } from "./transcript.js";

/** @typedef {import("../state.js").Wants} Wants */
/** @typedef {import("../types/workbench").Task} Task */
/** @typedef {import("../types/workbench").Tab} Tab */
/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * The shown task: its heading, its tab strip and its shown tab.
 * @returns {Wants}
 * @param {WorkbenchModel} model
 * @param {Task} task
 */
export function renderTask(model, task) {
  setText(els.taskHeading, task.title);
  const source = task.repository
    ? `${task.repository}${task.branch ? ` @ ${task.branch}` : ""}`
    : "New empty repository";
  // The failure itself is said once, in the failed tab's pane.
  setText(els.taskMeta, `${source} · agent ${task.agent} · sandbox: ${sandboxSummary(task)}`);
  renderTabStrip(model, task);
  const tab = app.tabId ? model.tabs.get(app.tabId) : null;
  show(els.noTab, !tab);
  show(els.tabPane, Boolean(tab));
  if (tab) return renderTab(model, task, tab);
  clearComposerTab();
  return { saveDraft: null, transcript: null };
}

/**
 * @param {WorkbenchModel} model
 * @param {Task} task
 */
function renderTabStrip(model, task) {
  const tabs = model.tabsOf(task.id);
  const focusedKey = find(document, "#tab-strip li:focus-within")?.dataset.key;
  reconcile(
    els.tabStrip,
    tabs,
    (tab) => tab.id,
    () =>
      h(
        "li",
        { class: "tab" },
        h(
          "button",
          {
            type: "button",
            class: "tab-select",
            dataset: { action: "select" },
            title: "Double-click (or F2) to rename",
          },
          h("span", { class: "tab-state", "aria-hidden": "true" }),
          h("span", { class: "tab-title" }),
          h("span", { class: "unread-dot", "aria-hidden": "true", hidden: true }),
          runningBadge("tab-running"),
        ),
        h("input", { class: "tab-rename", type: "text", maxlength: 200, autocomplete: "off", hidden: true }),
        h("button", { type: "button", class: "tab-close", dataset: { action: "close" } }, "×"),
      ),
    (li, tab) => {
      const state = TAB_STATES[tab.state] ?? tab.state;
      const active = tab.id === app.tabId;
      const title = app.renames.get(tab.id) ?? tab.title;
      const editing = app.renaming === tab.id;
      li.dataset.state = tab.state;
      li.dataset.tabId = tab.id;
      setAttr(li, "data-active", active ? "true" : null);
      const select = part(li, ".tab-select");
      setAttr(select, "aria-current", active ? "true" : null);
      const since = app.running.get(tab.id);
      showRunning(part(li, ".tab-running"), since ?? null);
      setAttr(
        select,
        "aria-label",
        `${title}, ${state}${since ? ", agent working" : ""}${tab.unread ? ", unread replies" : ""}`,
      );
      setText(part(li, ".tab-title"), title);
      setText(part(li, ".tab-state"), state);
      show(part(li, ".unread-dot"), tab.unread);
      show(select, !editing);
      const rename = part(li, ".tab-rename", HTMLInputElement);
      setAttr(rename, "aria-label", `Rename ${tab.title} (Enter saves, Escape cancels)`);
      show(rename, editing);
      setAttr(select, "tabindex", active ? "0" : "-1");
      const close = part(li, ".tab-close", HTMLButtonElement);
      setAttr(close, "tabindex", active ? "0" : "-1");
      setAttr(close, "aria-label", `Close ${title}`);
      close.disabled = app.closing.has(tab.id);
    },
  );
  // Focus was on a tab that went away: keep it in the strip rather than losing it.
  if (focusedKey && !tabs.some((tab) => tab.id === focusedKey)) {
    const next = find(els.tabStrip, `li[data-key="${app.tabId}"] .tab-select`);
    (next ?? els.newTab).focus();
  }
  // A tab that just became active is scrolled into view (the strip scrolls sideways).
  if (app.stripOrder.length && app.tabId && els.tabStrip.dataset.active !== app.tabId) {
    find(els.tabStrip, `li[data-key="${app.tabId}"]`)?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  els.tabStrip.dataset.active = app.tabId ?? "";
  app.stripOrder = tabs.map((tab) => tab.id);
  // Never disabled: every click opens its own tab; busy only says requests are on their way.
  setAttr(els.newTab, "aria-busy", app.opening > 0 ? "true" : null);
}

/**
 * The shown tab's pane; what it needs is returned (its transcript, if not loaded yet, and
 * the draft of the tab the composer left).
 * @returns {Wants}
 * @param {WorkbenchModel} model
 * @param {Task} task
 * @param {Tab} tab
 */
function renderTab(model, task, tab) {
  setText(els.tabPaneHeading, tab.title);
  renderTabStatus(model, task, tab);
  renderRepoForm(task, tab);
  renderProvisioning(task, tab);
  renderTranscript(model, tab);
  const left = renderComposer(model, tab);
  renderModel(task, tab);
  return { saveDraft: left, transcript: app.transcripts.has(tab.id) ? null : tab.id };
}

/**
 * The pane's state block; rebuilt only when what it says changes (it is a live region).
 * @param {WorkbenchModel} model
 * @param {Task} task
 * @param {Tab} tab
 */
function renderTabStatus(model, task, tab) {
  const step = tab.state === "pending_provision" ? currentStep(task.sandbox) : null;
  const messages = model.transcript(tab.id).length;
  const planned = task.sandbox?.plan?.length ?? 0;
  const failure = describeFailure(task, tab);
  const key = [
    tab.id, tab.state, tab.error_code, tab.error_message, tab.attempt, step?.name, planned, messages === 0,
    tab.state === "error" ? failure.summary : "", app.errorDetails.has(tab.id), app.editing?.tab === tab.id,
  ].join("|");
  if (key === app.statusKey) return;
  app.statusKey = key;
  els.tabStatus.dataset.state = tab.state;
  const elapsed = () =>
    h("span", { class: "elapsed", "aria-live": "off", dataset: { since: tab.state_changed_at } });
  let content = [];
  if (tab.state === "pending_provision") {
    const provisioning = task.sandbox && task.sandbox.state === "provisioning";
    const waiting = provisioning && step ? stepName(step) : "waiting for a worker";
    const plan = provisioning ? planRows(task.sandbox) : [];
    const index = step ? plan.findIndex((row) => row.name === step.name) : -1;
    const position = index >= 0 ? `Step ${index + 1} of ${plan.length}: ` : "Step: ";
    content = [
      h("p", { class: "status-title" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Preparing environment"),
      h("p", { class: "status-detail" }, position, h("strong", { class: "current-step" }, waiting), " · ", elapsed()),
    ];
  } else if (tab.state === "pending_session_create") {
    content = [
      h("p", { class: "status-title" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Starting session"),
      h("p", { class: "status-detail" }, "The environment is ready; starting the agent · ", elapsed()),
    ];
  } else if (tab.state === "error") {
    const open = app.errorDetails.has(tab.id);
    const editing = app.editing?.tab === tab.id;
    const failedAt = tab.state_changed_at ? new Date(tab.state_changed_at) : null;
    content = [
      h("p", { class: "status-title" }, h("span", { class: "status-icon", "aria-hidden": "true" }, "✕"), failure.summary),
      h(
        "p",
        { class: "status-detail failure-when" },
        `Attempt ${tab.attempt}`,
        failedAt
          ? [" · failed at ", h("time", { datetime: tab.state_changed_at, title: failedAt.toLocaleString() }, failedAt.toLocaleTimeString())]
          : null,
      ),
      failure.hint ? h("p", { class: "status-detail failure-hint" }, failure.hint) : null,
      h(
        "div",
        { class: "status-actions" },
        failure.editable && !editing
          ? h("button", { type: "button", class: "primary", dataset: { action: "edit-repository" } }, "Edit repository & retry")
          : null,
        h("button", { type: "button", class: failure.editable ? "retry" : "primary retry", dataset: { action: "retry" } }, "Retry"),
        failure.raw
          ? h("button", { type: "button", class: "details-toggle", "aria-expanded": String(open), "aria-controls": "error-details", dataset: { action: "details" } }, open ? "Hide details" : "Details")
          : null,
      ),
      failure.raw ? h("pre", { id: "error-details", class: "error-details", hidden: !open }, failure.raw) : null,
    ];
  } else if (tab.state === "ready" && messages === 0) {
    content = [h("p", { class: "status-detail" }, "The agent is ready. Send it a message to start.")];
  }
  els.tabStatus.replaceChildren(...content);
  show(els.tabStatus, content.length > 0);
  tickElapsed();
}

/**
 * The repository form of a failed tab: what it says comes from the task once, when opened.
 * @param {Task} task
 * @param {Tab} tab
 */
function renderRepoForm(task, tab) {
  const editing = app.editing; // closed by settle() once its tab was retried elsewhere
  const shown = Boolean(editing && editing.tab === tab.id && tab.state === "error");
  show(els.repoForm, shown);
  if (!shown || !editing) return;
  setText(els.repoError, editing.error);
  show(els.repoError, Boolean(editing.error));
  for (const button of els.repoForm.querySelectorAll("button")) button.disabled = editing.busy;
}

/**
 * The repository form, filled from the task (once, when opened) and focused.
 * @param {Task} task
 */
export function openRepoForm(task) {
  els.repoRepository.value = task.repository;
  els.repoBranch.value = task.branch;
}

/** What the repository form holds. */
export function repoFormValues() {
  return { repository: els.repoRepository.value.trim(), branch: els.repoBranch.value.trim() };
}

// -- renaming a tab, in place ---------------------------------------------------------------

/**
 * The title field of the tab being renamed: filled, focused, selected.
 * @param {string} tabId
 * @param {string} title
 */
export function focusRenameField(tabId, title) {
  const input = find(els.tabStrip, `li[data-key="${tabId}"] .tab-rename`, HTMLInputElement);
  if (!input) return;
  input.value = title;
  input.focus();
  input.select();
}

/**
 * What the title field of the tab holds, trimmed ("" if it is gone).
 * @param {string} tabId
 */
export function renameFieldValue(tabId) {
  const input = find(els.tabStrip, `li[data-key="${tabId}"] .tab-rename`, HTMLInputElement);
  return (input?.value ?? "").trim();
}

/**
 * The focus on the tab's button in the strip (if it is there).
 * @param {string} tabId
 */
export function focusTab(tabId) {
  find(els.tabStrip, `li[data-key="${tabId}"] .tab-select`)?.focus();
}
