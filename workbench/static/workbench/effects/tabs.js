// @ts-check
// The tabs of the shown task: selecting one (the draft it leaves is saved), loading its
// transcript, opening, closing (asking first when something typed would be lost),
// retrying, renaming in place, a failed tab's "Edit repository & retry", and what the
// pane unfolds (a step's log, a failure's details). Calls the API, changes the state,
// renders (schedule.js).
// Effects may also move the focus, read what a form holds and disable the button that
// submitted it; what the page says is drawn by the views.
// Imports effects/drafts.js, the views, state.js, schedule.js, dom.js and api.js.

import { api, apiAll, asApiError, withRetries } from "../api.js";
import { find } from "../dom.js";
import { render, scheduleRender } from "../schedule.js";
import { app, drafts, openModel, queuedCount } from "../state.js";
import { hideCloseDialog, showCloseDialog } from "../views/closing.js";
import { notify } from "../views/common.js";
import { draftText } from "../views/composer.js";
import { els } from "../views/elements.js";
import { focusRenameField, focusTab, openRepoForm, renameFieldValue, repoFormValues } from "../views/task.js";
import { saveDraft } from "./drafts.js";

/** @typedef {import("../stream.js").WorkbenchStream} WorkbenchStream */
/** @typedef {import("../types/workbench").Task} Task */
/** @typedef {import("../types/workbench").Tab} Tab */

/**
 * A task fetched on its own, not from the workbench's pages (a link to an older task, or
 * one a reconnect's snapshot lacked), into the model with its tabs, unless the page has
 * moved to another stream or workspace while it was fetched.
 * @param {WorkbenchStream} stream the stream the page had when the fetch began
 * @param {Task} task
 * @param {Tab[]} tabs
 */
export function addFetchedTask(stream, task, tabs) {
  if (app.stream !== stream || task.workspace !== app.workspaceId) return;
  stream.model.upsertTask(task);
  for (const tab of tabs) stream.model.upsertTab(tab);
}

/**
 * @param {number | null} taskId
 * @param {string | null} tabId
 */
export function select(taskId, tabId) {
  if (app.shownTabId && app.shownTabId !== tabId) saveDraft(app.shownTabId);
  if (taskId) app.archivedNotice = null;
  app.taskId = taskId;
  app.tabId = tabId;
  render();
}

/**
 * @param {string} tabId
 */
export async function loadTranscript(tabId) {
  const stream = app.stream;
  if (!stream) return;
  app.transcripts.set(tabId, "loading");
  try {
    const messages = await apiAll(`/api/tabs/${tabId}/messages/`);
    if (stream !== app.stream) return; // another workspace is shown now
    for (const message of messages) stream.model.upsertMessage(message);
    app.transcripts.set(tabId, "loaded");
  } catch (caught) {
    const error = asApiError(caught);
    if (stream !== app.stream) return;
    app.transcripts.set(tabId, "failed");
    if (error.status !== 404) notify(`Could not load the transcript: ${error.message}`);
  }
  scheduleRender();
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Open one tab on the shown task: one request per click (or shortcut), never blocked by
 * another still on its way. Its Idempotency-Key is made once, here, and sent again by the
 * retries of this request only, so a retry whose first try did reach the server gets the
 * same tab back rather than a second one. The newest click's tab is shown, with the focus
 * in its composer, whatever order the answers come in.
 */
export async function openTab() {
  const taskId = app.taskId;
  const stream = app.stream;
  if (!taskId || !stream) return;
  app.openClicks += 1;
  const click = app.openClicks;
  const key = newKey();
  app.opening += 1;
  scheduleRender();
  try {
    const tab = await withRetries(() =>
      api("POST", `/api/tasks/${taskId}/tabs/`, {}, { headers: { "Idempotency-Key": key } }),
    );
    if (stream !== app.stream) return; // another workspace is shown now
    stream.model.upsertTab(tab);
    // Not if the user moved on to another task meanwhile, nor over a newer click's tab.
    if (click > app.openShown && app.taskId === taskId && stream.model.tabs.has(tab.id)) {
      app.openShown = click;
      select(taskId, tab.id);
      els.composerInput.focus();
    }
  } catch (caught) {
    const error = asApiError(caught);
    if (stream === app.stream) notify(`Could not open a tab: ${error.message}`);
  } finally {
    app.opening -= 1;
    scheduleRender();
  }
}

/**
 * Close at once, unless the tab holds a draft or queued prompts: then ask, in the page.
 * @param {string} tabId
 */
export function askToClose(tabId) {
  const model = app.stream?.model;
  const tab = model?.tabs.get(tabId);
  if (!tab) return;
  const draft = draftText(tab);
  const queued = queuedCount(model, tabId);
  if (!draft.trim() && !queued) {
    closeTab(tabId);
    return;
  }
  app.closeAsk = tabId;
  showCloseDialog(app.renames.get(tabId) ?? tab.title, draft, queued);
}

/** "Close tab" in the dialog: the tab asked about is closed. */
export function confirmClose() {
  const tabId = app.closeAsk;
  hideCloseDialog();
  if (tabId) closeTab(tabId);
}

/** The dialog closed, whichever way (its buttons, Escape): nothing is being asked. */
export function endCloseAsk() {
  app.closeAsk = null;
}

/**
 * @param {string} tabId
 */
export async function closeTab(tabId) {
  if (app.closing.has(tabId)) return;
  app.closing.add(tabId);
  drafts.forget(tabId); // closing a tab discards its draft, on purpose
  scheduleRender();
  try {
    await api("DELETE", `/api/tabs/${tabId}/`);
    openModel().forgetTab(tabId);
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not close the tab: ${error.message}`);
  } finally {
    app.closing.delete(tabId);
    scheduleRender();
  }
}

/**
 * @param {string} tabId
 */
export async function retryTab(tabId) {
  try {
    openModel().upsertTab(await api("POST", `/api/tabs/${tabId}/retry/`));
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not retry: ${error.message}`);
  }
  scheduleRender();
}

// -- what the pane unfolds -------------------------------------------------------------------

/**
 * A provisioning step's log, opened or closed as the user asks (and kept so).
 * @param {string} key the step's "sandbox:step"
 * @param {boolean} open whether it is open now
 */
export function toggleStepLog(key, open) {
  app.stepLogs.set(key, !open);
  render();
}

/**
 * A failed tab's raw error text, unfolded or folded; the focus stays on its button.
 * @param {string} tabId
 */
export function toggleErrorDetails(tabId) {
  if (app.errorDetails.has(tabId)) app.errorDetails.delete(tabId);
  else app.errorDetails.add(tabId);
  render();
  find(els.tabStatus, "button[data-action=details]")?.focus();
}

// -- renaming a tab, in place ---------------------------------------------------------------

/**
 * @param {string} tabId
 */
export function startRename(tabId) {
  const tab = app.stream?.model.tabs.get(tabId);
  if (!tab) return;
  app.renaming = tabId;
  render();
  focusRenameField(tabId, app.renames.get(tabId) ?? tab.title);
}

/**
 * Leave the title field: keep what was typed (Enter, or focus moving away) or not (Escape).
 * @param {string} tabId
 * @param {{save: boolean, refocus: boolean}} options
 */
export function endRename(tabId, { save, refocus }) {
  if (app.renaming !== tabId) return; // already ended (Enter, then the blur it causes)
  const title = renameFieldValue(tabId);
  app.renaming = null;
  render();
  if (refocus) focusTab(tabId);
  const tab = app.stream?.model.tabs.get(tabId);
  if (save && tab && title && title !== tab.title) renameTab(tabId, title);
}

/**
 * @param {string} tabId
 * @param {string} title
 */
async function renameTab(tabId, title) {
  const stream = app.stream;
  if (!stream) return;
  app.renames.set(tabId, title); // shown at once; the server's answer (or event) confirms it
  scheduleRender();
  try {
    const saved = await api("PATCH", `/api/tabs/${tabId}/`, { title });
    if (stream === app.stream) stream.model.upsertTab(saved);
  } catch (caught) {
    const error = asApiError(caught);
    if (stream === app.stream) notify(`Could not rename the tab: ${error.message}`);
  } finally {
    if (app.renames.get(tabId) === title) app.renames.delete(tabId);
    scheduleRender();
  }
}

// -- a failed tab's repository, edited before the retry -------------------------------------

/**
 * @param {string} tabId
 */
export function startEditRepository(tabId) {
  const tab = app.stream?.model.tabs.get(tabId);
  const task = tab && openModel().tasks.get(tab.task);
  if (!task) return;
  app.editing = { tab: tabId, task: task.id, busy: false, error: "" };
  openRepoForm(task);
  render();
  els.repoRepository.focus();
  els.repoRepository.select();
}

export function cancelEditRepository() {
  app.editing = null;
  render();
  find(els.tabStatus, "button[data-action=edit-repository]")?.focus();
}

/** Save the task's repository and branch (the next attempt uses them), then retry the tab. */
export async function saveRepositoryAndRetry() {
  const editing = app.editing;
  if (!editing || editing.busy) return;
  const stream = app.stream;
  if (!stream) return;
  editing.busy = true;
  editing.error = "";
  render();
  const body = repoFormValues();
  try {
    stream.model.upsertTask(await api("PATCH", `/api/tasks/${editing.task}/`, body));
  } catch (caught) {
    const error = asApiError(caught);
    const fields = Object.entries(error.fields || {}).map(([name, problems]) => `${name}: ${[problems].flat().join(" ")}`);
    editing.error = `Not saved: ${fields.length ? fields.join("; ") : error.message}`;
    editing.busy = false;
    render();
    els.repoRepository.focus();
    return;
  }
  try {
    stream.model.upsertTab(await api("POST", `/api/tabs/${editing.tab}/retry/`));
    if (app.editing === editing) app.editing = null;
    els.composerInput.focus();
  } catch (caught) {
    const error = asApiError(caught);
    editing.error = `Saved, but the retry failed: ${error.message}`;
    editing.busy = false;
  }
  render();
}
