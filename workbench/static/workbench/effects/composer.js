// @ts-check
// What the composer asks for: sending the prompt (queued by the server while the tab is not
// ready), stopping the running turn, changing the tab's model. Calls the API, changes the
// state, schedules a render.
// Effects may also move the focus, read what a form holds and disable the button that
// submitted it; what the page says is drawn by the views.
// Imports effects/drafts.js, views/elements.js, state.js, schedule.js and api.js.

import { api, asApiError } from "../api.js";
import { scheduleRender } from "../schedule.js";
import { app, modelChoices, modelName, openModel } from "../state.js";
import { els } from "../views/elements.js";
import { editDraft, saveDraft } from "./drafts.js";

/**
 * Send the composer's prompt to the shown tab, whatever its state: a pending or failed tab
 * queues it (202) until it is ready. The text leaves the composer only once the server has
 * it; a refusal keeps it there, with the reason under it.
 */
export async function send() {
  const model = openModel();
  const tab = app.tabId === null ? undefined : model.tabs.get(app.tabId);
  const text = els.composerInput.value;
  if (!tab || app.sending) return;
  if (!text.trim()) {
    els.composerInput.focus();
    return;
  }
  app.sending = true;
  app.sendError = null;
  scheduleRender();
  try {
    const message = await api("POST", `/api/tabs/${tab.id}/messages/`, { text });
    model.upsertMessage(message);
    if (app.shownTabId === tab.id && els.composerInput.value === text) els.composerInput.value = "";
    editDraft(tab.id, app.shownTabId === tab.id ? els.composerInput.value : "");
    saveDraft(tab.id);
  } catch (caught) {
    const error = asApiError(caught);
    // Not sent (the tab was closed meanwhile, too many prompts wait, no network): the text
    // stays in the composer and in the draft, to be sent again.
    app.sendError = { tab: tab.id, text: `Not sent: ${error.message}` };
  } finally {
    app.sending = false;
    scheduleRender();
  }
}

/**
 * Ask the agent to stop the tab's running turn; the session stays.
 * @param {string} tabId
 */
export async function stopTurn(tabId) {
  if (app.stopping.has(tabId)) return;
  app.stopping.add(tabId);
  app.sendError = null;
  scheduleRender();
  try {
    await api("POST", `/api/tabs/${tabId}/cancel/`, {});
    // "Stopping…" stays until the turn's prompt leaves `sending` (its events end it).
  } catch (caught) {
    const error = asApiError(caught);
    app.stopping.delete(tabId);
    if (error.code !== "no_running_turn") app.sendError = { tab: tabId, text: `Could not stop: ${error.message}` };
  }
  scheduleRender();
}

/**
 * @param {string} tabId
 * @param {string} value
 */
export async function setModel(tabId, value) {
  const model = openModel();
  const tab = model.tabs.get(tabId);
  if (!tab || (value === tab.model && !app.modelSaving)) return;
  const stream = app.stream;
  if (!stream) return;
  const saving = { tab: tabId, value };
  app.modelSaving = saving;
  app.modelFeedback = null;
  scheduleRender();
  try {
    const saved = await api("PATCH", `/api/tabs/${tabId}/`, { model: value });
    if (stream !== app.stream) return;
    stream.model.upsertTab(saved);
    const task = stream.model.tasks.get(saved.task);
    const name = modelName(saved.model, task ? modelChoices(task) : { models: [], defaultModel: "" });
    app.modelFeedback = { tab: tabId, text: `Model set to ${name}.`, error: false };
  } catch (caught) {
    const error = asApiError(caught);
    if (stream !== app.stream) return;
    const choices = error.fields && error.fields.model ? ` (${error.fields.model.join("; ")})` : "";
    app.modelFeedback = { tab: tabId, text: `Could not change the model: ${error.message}${choices}.`, error: true };
  } finally {
    if (app.modelSaving === saving) app.modelSaving = null;
    scheduleRender();
  }
}
