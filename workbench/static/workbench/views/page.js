// @ts-check
// The page as a whole: drawPage() draws everything from the state and returns what the
// page needs that only an effect can get (Wants); the lost-access page, the workspace
// picker, the task list, the new-task form's agent choice and hint, and the drawer of
// narrow windows. Views read the state and write the DOM (and the state's bookkeeping of
// what is drawn: the keys of blocks rebuilt only on change); they never request. Imports the other views, state.js and dom.js.

import { find, h, part, reconcile, setAttr, setText, show } from "../dom.js";
import { MOCK_AGENT_NOTE, app, sandboxSummary, visibleTasks } from "../state.js";
import { renderArchivedNotice } from "./closing.js";
import { runningBadge, showRunning } from "./common.js";
import { clearComposerTab } from "./composer.js";
import { els } from "./elements.js";
import { renderMembers } from "./members.js";
import { renderTask } from "./task.js";

/** @typedef {import("../state.js").Wants} Wants */
/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * Draw the whole page from the state (settled first, by effects/render.js) and say what
 * it needs that only an effect can get: views never request.
 * @returns {Wants}
 */
export function drawPage() {
  /** @type {Wants} */
  let wants = { saveDraft: null, transcript: null };
  const stream = app.stream;
  const ready = Boolean(stream && stream.snapshots > 0);
  renderNoAccess();
  show(els.noWorkspace, app.workspaces.length === 0 && !app.noAccess?.loading);
  show(els.taskForm, !app.noAccess);
  els.membersButton.disabled = !ready;
  if (!ready) {
    clearComposerTab();
    show(els.noTask, false);
    show(els.taskView, false);
    if (app.noAccess) {
      els.taskList.replaceChildren();
      show(els.taskEmpty, false);
      document.title = "Workbench";
    }
    return wants;
  }
  if (!stream || !ready) return wants;
  const model = stream.model;
  renderTaskList(model);
  const task = app.taskId ? model.tasks.get(app.taskId) : null;
  show(els.noTask, !task && !app.archivedNotice);
  show(els.taskView, Boolean(task));
  renderArchivedNotice();
  if (task) wants = renderTask(model, task);
  else clearComposerTab();
  if (app.closeAsk && !model.tabs.has(app.closeAsk) && els.closeDialog.open) els.closeDialog.close();
  if (els.membersDialog.open) renderMembers(model);
  const unread = [...model.tabs.values()].filter((tab) => tab.unread).length;
  document.title = unread ? `(${unread}) Workbench` : "Workbench";
  return wants;
}

function renderNoAccess() {
  const lost = app.noAccess;
  show(els.noAccess, Boolean(lost));
  if (!lost) return;
  let heading = `You no longer have access to “${lost.name}”`;
  let detail = "An owner removed you from this workspace, so its tasks and tabs are no longer shown.";
  if (lost.left) {
    heading = `You left “${lost.name}”`;
    detail = "Its tasks and tabs are no longer shown here.";
  } else if (!lost.removed) {
    heading = `You have no access to “${lost.name}”`;
    detail = "You are not a member of this workspace (or no longer are).";
  }
  setText(els.noAccessHeading, heading);
  setText(els.noAccessDetail, detail);
  show(els.noAccessLoading, lost.loading);
  const others = lost.loading ? [] : app.workspaces.filter((workspace) => workspace.id !== lost.id);
  show(els.noAccessOthers, others.length > 0);
  reconcile(
    els.noAccessList,
    others,
    (workspace) => workspace.id,
    () => h("li", {}, h("button", { type: "button", class: "workspace-open" })),
    (li, workspace) => {
      const button = /** @type {HTMLButtonElement} */ (li.firstElementChild);
      button.dataset.workspaceId = String(workspace.id);
      setText(button, workspace.name);
    },
  );
}

export function renderWorkspacePicker() {
  const select = els.workspaceSelect;
  const shown = app.workspaces.some((workspace) => workspace.id === app.workspaceId);
  select.replaceChildren(
    ...(shown ? [] : [h("option", { value: "", disabled: true, selected: true }, "Choose a workspace")]),
    ...app.workspaces.map((workspace) =>
      h("option", { value: workspace.id, selected: workspace.id === app.workspaceId }, workspace.name),
    ),
  );
  select.disabled = app.workspaces.length === 0;
  select.value = shown ? String(app.workspaceId) : "";
}

/**
 * @param {WorkbenchModel} model
 */
function renderTaskList(model) {
  const tasks = visibleTasks(model);
  show(els.taskEmpty, tasks.length === 0);
  reconcile(
    els.taskList,
    tasks,
    (task) => task.id,
    () =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "task-item" },
          h("span", { class: "task-item-title" }),
          h(
            "span",
            { class: "task-item-meta" },
            h("span", { class: "badge sandbox-badge" }),
            h("span", { class: "task-item-tabs" }),
            runningBadge("task-item-running"),
          ),
        ),
      ),
    (li, task) => {
      const button = /** @type {HTMLButtonElement} */ (li.firstElementChild);
      button.dataset.taskId = task.id;
      setAttr(button, "aria-current", task.id === app.taskId ? "true" : null);
      setText(part(button, ".task-item-title"), task.title);
      const badge = part(button, ".sandbox-badge");
      badge.dataset.state = task.sandbox ? task.sandbox.state : "none";
      setText(badge, sandboxSummary(task));
      const open = model.tabsOf(task.id).length;
      setText(part(button, ".task-item-tabs"), open === 1 ? "1 tab" : `${open} tabs`);
      // The task's longest-running turn, if any of its tabs has one.
      const running = /** @type {string[]} */ (model.tabsOf(task.id).map((tab) => app.running.get(tab.id)).filter(Boolean));
      const since = running.sort((a, b) => Date.parse(a) - Date.parse(b))[0];
      showRunning(part(button, ".task-item-running"), since ?? null);
    },
  );
  show(els.taskMore, Boolean(model.next));
  els.taskMore.disabled = app.loadingPage !== null;
  setText(els.taskMore, app.loadingPage !== null ? "Loading more tasks…" : "Show more tasks");
}

export function renderAgentChoice() {
  const select = els.taskAgent;
  if (app.agents && app.agents.length && select.dataset.loaded !== "true") {
    const chosen = select.value || "mock";
    select.replaceChildren(
      ...app.agents.map((agent) =>
        h("option", { value: agent.name }, agent.name),
      ),
    );
    select.value = app.agents.some((agent) => agent.name === chosen) ? chosen : app.agents[0].name;
    select.dataset.loaded = "true";
  }
  setText(els.taskAgentNote, select.value === "mock" ? MOCK_AGENT_NOTE : "");
}

/**
 * Why the new task was not created (or nothing: hidden).
 * @param {string} text
 */
export function showTaskFormHint(text) {
  if (text) setText(els.taskFormHint, text);
  show(els.taskFormHint, Boolean(text));
}

/**
 * The new-task form, emptied for the next task (which likely runs the same agent).
 * @param {HTMLFormElement} form
 */
export function resetTaskForm(form) {
  const agent = els.taskAgent.value;
  form.reset();
  els.taskAgent.value = agent;
  part(form, "details", HTMLDetailsElement).open = false;
  renderAgentChoice();
}

// -- narrow windows: the task list as a drawer ----------------------------------------------

export const NARROW = window.matchMedia("(max-width: 760px)");

/**
 * Open or close the drawer (narrow windows only); the focus goes in, or back out.
 * @param {boolean} open
 * @param {{focus?: boolean}} [options]
 */
export function setDrawer(open, { focus = true } = {}) {
  const opened = open && NARROW.matches;
  document.body.dataset.drawer = opened ? "open" : "closed";
  setAttr(els.drawerToggle, "aria-expanded", opened ? "true" : "false");
  show(els.drawerBackdrop, opened);
  if (!focus) return;
  if (opened) (find(els.taskList, '[aria-current="true"]') ?? els.taskTitle).focus();
  else if (els.sidebar.contains(document.activeElement)) els.drawerToggle.focus();
}
