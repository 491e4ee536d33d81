// @ts-check
// Drafts reach the server: a debounced save after each edit (the local copy in state.js
// holds the text meanwhile), every pending save at once (switching workspace, leaving the
// page, keepalive), and after a snapshot what an earlier page could not save. Calls the
// API, changes the state, schedules a render. Imports state.js, schedule.js and api.js.

import { api, asApiError } from "../api.js";
import { scheduleRender } from "../schedule.js";
import { DRAFT_SAVE_DELAY_MS, app, drafts } from "../state.js";

/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * Typed in the tab: kept locally at once, saved once the typing pauses.
 * @param {string} tabId
 * @param {string} text
 */
export function editDraft(tabId, text) {
  drafts.keep(tabId, text);
  clearTimeout(drafts.timers.get(tabId));
  drafts.timers.set(tabId, setTimeout(() => saveDraft(tabId), DRAFT_SAVE_DELAY_MS));
}

/**
 * @param {string} tabId
 * @param {{keepalive?: boolean}} [options]
 */
export async function saveDraft(tabId, { keepalive = false } = {}) {
  clearTimeout(drafts.timers.get(tabId));
  drafts.timers.delete(tabId);
  const model = app.stream && app.stream.model;
  const tab = model && model.tabs.get(tabId);
  if (!tab || !drafts.has(tabId)) return;
  const text = drafts.local[tabId].text;
  if (text === tab.draft) {
    drafts.forget(tabId);
    return;
  }
  try {
    const saved = await api("PATCH", `/api/tabs/${tabId}/`, { draft: text }, { keepalive });
    model.upsertTab(saved);
    if (drafts.local[tabId]?.text === text) drafts.forget(tabId);
    scheduleRender();
  } catch (caught) {
    const error = asApiError(caught);
    if (error.code === "tab_closed" || error.status === 404) drafts.forget(tabId);
    // Otherwise keep the local copy: the next edit or reconnect saves it.
  }
}

/**
 * After a snapshot: save what an earlier page could not, drop drafts of closed tabs.
 * @param {WorkbenchModel} model
 * @param {number} workspaceId
 */
export function reconcileDrafts(model, workspaceId) {
  for (const [tabId, entry] of Object.entries(drafts.local)) {
    if (entry.workspace !== workspaceId) continue;
    if (!model.tabs.has(tabId)) drafts.forget(tabId);
    else if (!drafts.timers.has(tabId)) saveDraft(tabId);
  }
}

/**
 * Send every save still waiting for its debounce.
 * @param {{keepalive?: boolean}} [options]
 */
export function flushDrafts({ keepalive = false } = {}) {
  for (const tabId of [...drafts.timers.keys()]) saveDraft(tabId, { keepalive });
}
