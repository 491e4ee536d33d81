// @ts-check
// The browser workbench: workspaces, tasks and their tabs, live. It uses only the public
// REST API (api.js) and the websocket stream (stream.js); the URL fragment says what is
// shown (#workspace=1&task=2&tab=<uuid>), so a refresh restores the same view.
//
// This module is the wiring only: it registers the page's render (effects/render.js) into
// the render loop (schedule.js), binds the page's events (delegated where lists are
// redrawn) to the effects and views, and boots. The layers below import only downward:
// app.js → effects/ → views/ → state.js → dom.js, api.js, model.js, stream.js, markdown.js
// (schedule.js, which imports nothing, is on the bottom floor, for effects and app.js only).

import { loginAgain } from "./api.js";
import { closestTarget, part, show, targetMatches } from "./dom.js";
import { scheduleRender, setRender } from "./schedule.js";
import { app } from "./state.js";
import { tickElapsed } from "./views/common.js";
import { els } from "./views/elements.js";
import { hideCloseDialog } from "./views/closing.js";
import { askToLeave, closeMembers } from "./views/members.js";
import { NARROW, renderAgentChoice, setDrawer } from "./views/page.js";
import { focusTab } from "./views/task.js";
import {
  archiveTask,
  commitArchive,
  copyDraft,
  dismissArchived,
  pauseUndo,
  resumeUndo,
  undoArchive,
} from "./effects/archive.js";
import { send, setModel, stopTurn } from "./effects/composer.js";
import { editDraft, flushDrafts } from "./effects/drafts.js";
import { addMember, changeRole, leaveWorkspace, openMembers, removeMember } from "./effects/members.js";
import { renderAll } from "./effects/render.js";
import {
  askToClose,
  cancelEditRepository,
  confirmClose,
  endCloseAsk,
  endRename,
  openTab,
  retryTab,
  saveRepositoryAndRetry,
  select,
  startEditRepository,
  startRename,
  toggleErrorDetails,
  toggleStepLog,
} from "./effects/tabs.js";
import {
  createTask,
  createWorkspace,
  followHash,
  loadMoreTasks,
  openWorkspaceAt,
  start,
} from "./effects/workspace.js";

/** Left/Right (Home/End) move between the tabs of the strip, selecting them; only the
 * shown tab is in the Tab order (a roving tabindex), so Tab leaves the strip at once. */
function moveInStrip(event) {
  const keys = { ArrowLeft: -1, ArrowRight: 1, Home: "first", End: "last" };
  const step = keys[event.key];
  if (step === undefined || !targetMatches(event, ".tab-select")) return false;
  const items = [...els.tabStrip.querySelectorAll("li")];
  const index = items.findIndex((item) => item === closestTarget(event, "li"));
  let next = step === "first" ? 0 : step === "last" ? items.length - 1 : index + step;
  next = Math.max(0, Math.min(items.length - 1, next));
  event.preventDefault();
  const tabId = items[next]?.dataset.key;
  if (!tabId) return true;
  select(app.taskId, tabId);
  focusTab(tabId);
  return true;
}

// -- events -------------------------------------------------------------------------------

function bindEvents() {
  els.workspaceSelect.addEventListener("change", () => openWorkspaceAt(Number(els.workspaceSelect.value)));
  els.taskForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createTask(els.taskForm);
  });
  els.taskPrompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      createTask(els.taskForm);
    }
  });
  els.taskAgent.addEventListener("change", renderAgentChoice);
  els.drawerToggle.addEventListener("click", () => setDrawer(document.body.dataset.drawer !== "open"));
  els.drawerBackdrop.addEventListener("click", () => setDrawer(false));
  els.sidebar.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.dataset.drawer === "open") setDrawer(false);
  });
  NARROW.addEventListener("change", () => setDrawer(false, { focus: false }));
  els.workspaceForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createWorkspace(els.workspaceForm);
  });
  els.taskMore.addEventListener("click", () => loadMoreTasks());
  // Scrolling to the end of the list loads the next page, as a click would.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMoreTasks();
  }).observe(els.taskMore);
  els.taskList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-task-id]");
    if (!button) return;
    const taskId = Number(button.dataset.taskId);
    select(taskId, app.lastTabOfTask.get(taskId) ?? null);
    if (document.body.dataset.drawer === "open") {
      setDrawer(false, { focus: false });
      els.main.focus();
    }
  });
  els.tabStrip.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-action]");
    const tabId = button?.closest("li")?.dataset.key;
    if (!tabId) return;
    if (button.dataset.action === "close") askToClose(tabId);
    else select(app.taskId, tabId);
  });
  els.tabStrip.addEventListener("dblclick", (event) => {
    const tabId = closestTarget(event, ".tab-select")?.closest("li")?.dataset.key;
    if (tabId) startRename(tabId);
  });
  els.tabStrip.addEventListener("keydown", (event) => {
    const tabId = closestTarget(event, "li")?.dataset.key;
    if (!tabId) return;
    if (moveInStrip(event)) return;
    if (targetMatches(event, ".tab-select") && event.key === "F2") {
      event.preventDefault();
      startRename(tabId);
    } else if (targetMatches(event, ".tab-rename") && (event.key === "Enter" || event.key === "Escape")) {
      event.preventDefault();
      event.stopPropagation();
      endRename(tabId, { save: event.key === "Enter", refocus: true });
    }
  });
  els.tabStrip.addEventListener("focusout", (event) => {
    if (!targetMatches(event, ".tab-rename")) return;
    const tabId = closestTarget(event, "li")?.dataset.key;
    if (tabId) endRename(tabId, { save: true, refocus: false });
  });
  els.newTab.addEventListener("click", openTab);
  els.turnStop.addEventListener("click", () => {
    if (app.shownTabId) stopTurn(app.shownTabId);
  });
  // Alt+N anywhere on the page (the composer included) opens a tab, as the button does;
  // a held key opens one, not one per repeat.
  document.addEventListener("keydown", (event) => {
    if (event.code !== "KeyN" || !event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (els.membersDialog.open || els.closeDialog.open || els.taskView.hidden || !app.taskId) return;
    event.preventDefault();
    if (!event.repeat) openTab();
  });
  els.taskSteps.addEventListener("click", (event) => {
    const li = closestTarget(event, "button[data-action=log]")?.closest("li");
    if (!li) return;
    toggleStepLog(li.dataset.key ?? "", part(li, ".step-log-toggle").getAttribute("aria-expanded") === "true");
  });
  els.tabStatus.addEventListener("click", (event) => {
    const action = closestTarget(event, "button[data-action]")?.dataset.action;
    if (!action || !app.tabId) return;
    if (action === "retry") retryTab(app.tabId);
    else if (action === "edit-repository") startEditRepository(app.tabId);
    else if (action === "details") toggleErrorDetails(app.tabId);
  });
  els.repoForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveRepositoryAndRetry();
  });
  els.repoCancel.addEventListener("click", cancelEditRepository);
  els.repoForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancelEditRepository();
  });
  els.composerInput.addEventListener("input", () => {
    if (app.shownTabId) editDraft(app.shownTabId, els.composerInput.value);
  });
  els.composerInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  els.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  els.modelSelect.addEventListener("change", () => {
    if (app.shownTabId) setModel(app.shownTabId, els.modelSelect.value);
  });
  els.modelForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (app.shownTabId) setModel(app.shownTabId, els.modelInput.value.trim());
  });
  els.membersButton.addEventListener("click", openMembers);
  part(els.membersDialog, ".dialog-close").addEventListener("click", () => closeMembers());
  // Escape (the dialog's own "cancel") and every other way of closing: focus goes back.
  els.membersDialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    closeMembers();
  });
  els.membersDialog.addEventListener("click", (event) => {
    if (event.target === els.membersDialog) closeMembers(); // the backdrop
  });
  els.memberAdd.addEventListener("submit", (event) => {
    event.preventDefault();
    addMember();
  });
  els.memberList.addEventListener("change", (event) => {
    const select = closestTarget(event, "select[data-action=role]");
    const userId = Number(select?.closest("li")?.dataset.key);
    if (userId && select instanceof HTMLSelectElement) changeRole(userId, select.value);
  });
  els.memberList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-action=remove]");
    const userId = Number(button?.closest("li")?.dataset.key);
    if (userId) removeMember(userId);
  });
  els.memberLeave.addEventListener("click", () => askToLeave(true));
  els.memberLeaveNo.addEventListener("click", () => askToLeave(false));
  els.memberLeaveYes.addEventListener("click", leaveWorkspace);
  els.noAccessList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-workspace-id]");
    if (button) openWorkspaceAt(Number(button.dataset.workspaceId));
  });
  part(els.notice, ".notice-dismiss").addEventListener("click", () => show(els.notice, false));
  els.taskArchive.addEventListener("click", (event) => {
    // The second click of a double click would archive the next task shown: ignored.
    if (event.detail > 1 || !app.taskId) return;
    archiveTask(app.taskId);
  });
  els.toastUndo.addEventListener("click", undoArchive);
  // The Undo waits while it is pointed at (the focus is put on it, so that cannot pause it).
  els.toast.addEventListener("mouseenter", pauseUndo);
  els.toast.addEventListener("mouseleave", resumeUndo);
  els.taskArchivedDismiss.addEventListener("click", dismissArchived);
  els.taskArchivedDrafts.addEventListener("click", (event) => {
    const tabId = closestTarget(event, "button[data-action=copy]")?.closest("li")?.dataset.key;
    if (tabId) copyDraft(tabId);
  });
  els.closeYes.addEventListener("click", confirmClose);
  els.closeNo.addEventListener("click", hideCloseDialog);
  els.closeDialog.addEventListener("close", endCloseAsk);
  window.addEventListener("hashchange", followHash);
  // Leaving the page: send what is still waiting for its debounce (keepalive outlives us).
  // An archive still waiting for its Undo is sent now: it was asked for.
  window.addEventListener("pagehide", () => {
    flushDrafts({ keepalive: true });
    commitArchive({ keepalive: true });
  });
  document.addEventListener("visibilitychange", scheduleRender);
  setInterval(tickElapsed, 1000);
}

async function boot() {
  setRender(renderAll);
  bindEvents();
  await start();
}

boot().catch((error) => {
  console.error(error);
  if (error && error.status === 401) loginAgain();
});
