// @ts-check
// Archiving without losing anything: the task hidden at once behind an Undo, the archive
// sent once the Undo is gone; a task archived elsewhere while shown (or while this page was
// disconnected: asked after the snapshot that lacks it) turns into a notice with its drafts
// to copy. Calls the API (and the clipboard), changes the state, renders.
// Effects may also move the focus, read what a form holds and disable the button that
// submitted it; what the page says is drawn by the views.
// Imports effects/tabs.js, effects/drafts.js, the views, state.js, schedule.js and api.js.

import { api, apiList, asApiError } from "../api.js";
import { render, scheduleRender } from "../schedule.js";
import { UNDO_MS, app } from "../state.js";
import { hideUndoToast, selectArchivedDraft, showUndoToast } from "../views/closing.js";
import { notify } from "../views/common.js";
import { draftText } from "../views/composer.js";
import { els } from "../views/elements.js";
import { saveDraft } from "./drafts.js";
import { addFetchedTask, select } from "./tabs.js";

/** @typedef {import("../types/workbench").Task} Task */
/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * Archive the task: hidden from the list at once, the next task shown, and an Undo offered;
 * the request is sent only once the Undo is gone (UNDO_MS, or sooner if another archive,
 * another workspace or leaving the page needs it sent).
 * @param {number} taskId
 */
export function archiveTask(taskId) {
  const model = app.stream?.model;
  const task = model?.tasks.get(taskId);
  if (!model || !task) return;
  commitArchive(); // one Undo at a time: an earlier archive is sent now
  const typed = model.tabsOf(taskId).filter((tab) => draftText(tab).trim()).length;
  if (app.shownTabId) saveDraft(app.shownTabId);
  app.archiveUndo = { taskId, title: task.title, tabId: app.tabId, timer: null, deadline: 0, remaining: UNDO_MS };
  app.taskId = null;
  app.tabId = null;
  render();
  const kept = typed ? ` Its ${typed === 1 ? "draft goes" : `${typed} drafts go`} with it.` : "";
  showUndoToast(`Archived “${task.title}”.${kept}`);
  resumeUndo();
  // The Archive button now stands for the next task: the focus goes to the Undo instead.
  els.toastUndo.focus();
}

export function pauseUndo() {
  const pending = app.archiveUndo;
  if (!pending || pending.timer === null) return;
  clearTimeout(pending.timer ?? undefined);
  pending.timer = null;
  pending.remaining = Math.max(0, pending.deadline - Date.now());
}

export function resumeUndo() {
  const pending = app.archiveUndo;
  if (!pending || pending.timer !== null) return;
  pending.deadline = Date.now() + pending.remaining;
  pending.timer = setTimeout(() => commitArchive(), pending.remaining);
}

export function undoArchive() {
  const pending = app.archiveUndo;
  if (!pending) return;
  clearTimeout(pending.timer ?? undefined);
  app.archiveUndo = null;
  hideUndoToast();
  select(pending.taskId, pending.tabId);
  els.taskArchive.focus();
}

/**
 * Send the archive waiting behind its Undo, if any.
 * @param {{keepalive?: boolean}} [options]
 */
export async function commitArchive({ keepalive = false } = {}) {
  const pending = app.archiveUndo;
  if (!pending) return;
  clearTimeout(pending.timer ?? undefined);
  app.archiveUndo = null;
  hideUndoToast({ refocus: true });
  app.archivingHere.add(pending.taskId);
  const stream = app.stream;
  try {
    const task = await api("POST", `/api/tasks/${pending.taskId}/archive/`, {}, { keepalive });
    if (stream && stream === app.stream) stream.model.upsertTask(task);
  } catch (caught) {
    const error = asApiError(caught);
    app.archivingHere.delete(pending.taskId);
    if (error.status !== 404 && stream === app.stream) {
      notify(`Could not archive “${pending.title}”: ${error.message}`); // it is listed again
    }
  }
  scheduleRender();
}

/**
 * The shown task was archived elsewhere (another page, member or REST client): rather than
 * jumping to another task, say so, with every draft of its tabs to copy.
 * @param {Task} task
 */
export function archivedElsewhere(task) {
  if (task.id !== app.taskId || app.archivingHere.has(task.id)) return;
  showArchivedNotice(task, typedDrafts(task.id));
}

/**
 * A fresh snapshot (a reconnect whose missed events were no longer kept) came without the
 * task this page showed, which had open tabs here: it may have been archived meanwhile, and
 * no event will now say so. Its drafts are read at once (reconcileDrafts, which runs next,
 * saves the local ones: a closed tab's answer drops them) and the selection stays on it
 * while the server is asked: archived → the notice with its drafts, as archivedElsewhere; still there
 * (only not on the snapshot's first page) → shown again, as a linked task is; gone or no
 * longer mine → the page moves on, as before.
 * @param {WorkbenchModel} model the workspace's model, the snapshot just loaded
 */
export function checkVanishedTask(model) {
  const taskId = app.taskId;
  const stream = app.stream;
  if (taskId === null || !stream || model.tasks.has(taskId) || app.archivedNotice) return;
  if (app.archivingHere.has(taskId) || app.loadingLinked !== null) return;
  if (![...app.knownTabs.values()].some((tab) => tab.task === taskId)) return;
  const typed = typedDrafts(taskId);
  app.loadingLinked = taskId; // keeps the selection on it until the answer (normalizeSelection)
  (async () => {
    try {
      const task = /** @type {Task} */ (await api("GET", `/api/tasks/${taskId}/`));
      if (app.stream !== stream || task.workspace !== app.workspaceId) return;
      if (task.archived) {
        if (app.taskId === taskId && !app.archivingHere.has(taskId)) showArchivedNotice(task, typed);
        return;
      }
      addFetchedTask(stream, task, await apiList(`/api/tasks/${taskId}/tabs/`));
    } catch {
      // Gone, or no longer mine (404), or unreachable: another task is shown, as before.
    } finally {
      if (app.loadingLinked === taskId) app.loadingLinked = null;
      scheduleRender();
    }
  })();
}

/**
 * What this page holds typed in the task's tabs as last drawn, oldest tab first.
 * @param {number} taskId
 */
function typedDrafts(taskId) {
  return [...app.knownTabs.values()]
    .filter((tab) => tab.task === taskId)
    .sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at))
    .map((tab) => ({ tabId: tab.id, title: app.renames.get(tab.id) ?? tab.title, text: draftText(tab) }))
    .filter((draft) => draft.text.trim());
}

/**
 * @param {Task} task
 * @param {{tabId: string, title: string, text: string}[]} typed
 */
function showArchivedNotice(task, typed) {
  const hadFocus = els.taskView.contains(document.activeElement) || document.activeElement === document.body;
  if (els.closeDialog.open) els.closeDialog.close();
  app.archivedNotice = { taskId: task.id, title: task.title, drafts: typed, copied: null };
  app.taskId = null;
  app.tabId = null;
  render();
  if (hadFocus) els.taskArchivedHeading.focus();
}

/**
 * Copy a draft of the archived task (or select it, without clipboard access).
 * @param {string} tabId
 */
export async function copyDraft(tabId) {
  const notice = app.archivedNotice;
  const draft = notice?.drafts.find((item) => item.tabId === tabId);
  if (!notice || !draft) return;
  try {
    await navigator.clipboard.writeText(draft.text);
    notice.copied = tabId;
  } catch {
    notice.copied = null;
    selectArchivedDraft(tabId);
    return;
  }
  render();
}

export function dismissArchived() {
  app.archivedNotice = null;
  render();
  els.main.focus();
}
