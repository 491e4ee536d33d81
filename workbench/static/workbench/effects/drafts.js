// @ts-check
// Drafts reach the server: a debounced save after each edit (the local copy in state.js
// holds the text meanwhile), every pending save at once (switching workspace, leaving the
// page, keepalive), and after a snapshot what an earlier page could not save. A local draft
// is forgotten only once the server holds its text or the tab is known to be closed. Calls the
// API, changes the state, schedules a render. Imports state.js, schedule.js and api.js.

import { api, asApiError } from "../api.js";
import { scheduleRender } from "../schedule.js";
import { DRAFT_SAVE_DELAY_MS, app, drafts } from "../state.js";

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
 * Save the tab's local draft. A tab this page does not hold (not on a page loaded yet) is
 * saved all the same: the server's answer says whether it has the text, or the tab is
 * closed. The local copy goes only once the server has its text or the tab is closed.
 * @param {string} tabId
 * @param {{keepalive?: boolean}} [options]
 */
export async function saveDraft(tabId, { keepalive = false } = {}) {
  clearTimeout(drafts.timers.get(tabId));
  drafts.timers.delete(tabId);
  const model = app.stream && app.stream.model;
  if (!model || !drafts.has(tabId)) return;
  if (model.closedTabs.has(tabId)) {
    drafts.forget(tabId); // closed (its event, or a REST answer, said so)
    return;
  }
  const tab = model.tabs.get(tabId);
  const text = drafts.local[tabId].text;
  if (tab && text === tab.draft) {
    drafts.forget(tabId);
    return;
  }
  // The same text already on its way (a switch saves the tab it leaves, then its render
  // asks again) is not sent twice; a save that must outlive the page is.
  if (!keepalive && drafts.saving.get(tabId) === text) return;
  drafts.saving.set(tabId, text);
  try {
    const saved = await api("PATCH", `/api/tabs/${tabId}/`, { draft: text }, { keepalive });
    if (model.tabs.has(tabId)) model.upsertTab(saved); // else: its page, once loaded, has it
    if (drafts.local[tabId]?.text === text) drafts.forget(tabId);
    scheduleRender();
  } catch (caught) {
    const error = asApiError(caught);
    if (error.code === "tab_closed" || error.status === 404) drafts.forget(tabId);
    // Otherwise keep the local copy: the next edit or reconnect saves it.
  } finally {
    if (drafts.saving.get(tabId) === text) drafts.saving.delete(tabId);
  }
}

/**
 * After a snapshot: save what an earlier page could not, the drafts of tabs the snapshot
 * does not carry included (its first page holds only the newest tasks; the save's answer
 * says whether the tab is still open). Nothing is dropped for being absent from a page.
 * @param {number} workspaceId
 */
export function reconcileDrafts(workspaceId) {
  for (const [tabId, entry] of Object.entries(drafts.local)) {
    if (entry.workspace !== workspaceId) continue;
    if (!drafts.timers.has(tabId)) saveDraft(tabId);
  }
}

/**
 * Send every save still waiting for its debounce.
 * @param {{keepalive?: boolean}} [options]
 */
export function flushDrafts({ keepalive = false } = {}) {
  for (const tabId of [...drafts.timers.keys()]) saveDraft(tabId, { keepalive });
}
