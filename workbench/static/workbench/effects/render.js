// @ts-check
// The page's render, registered by app.js into schedule.js: the state settled (selection,
// running turns), the page drawn by the views, then what the drawing found the page needs
// acted on (the draft the composer left saved, a transcript loaded), and the server told
// which tab this page shows (`view`). Imports effects/tabs.js, effects/drafts.js,
// views/page.js and state.js.

import { app, settle, writeHash } from "../state.js";
import { drawPage } from "../views/page.js";
import { saveDraft } from "./drafts.js";
import { loadTranscript } from "./tabs.js";

/** @typedef {import("../stream.js").WorkbenchStream} WorkbenchStream */

/** Settle, draw, act on what the drawing needs: what render() and scheduleRender() run. */
export function renderAll() {
  const stream = app.stream;
  const ready = Boolean(stream && stream.snapshots > 0);
  if (stream && ready) settle(stream.model);
  const wants = drawPage();
  if (wants.saveDraft) saveDraft(wants.saveDraft);
  if (wants.transcript) loadTranscript(wants.transcript);
  if (stream && ready) {
    syncView(stream);
    writeHash();
  }
}

/**
 * Tell the server which tab this page shows while it is visible (`view`): that keeps the
 * tab read for me, and clears its unread. A shown tab that turned unread anyway (a reply
 * that beat the claim) is claimed once more, which clears it.
 */
/** @param {WorkbenchStream} stream */
function syncView(stream) {
  const model = stream.model;
  const visible = document.visibilityState === "visible";
  const tab = visible && app.shownTabId ? model.tabs.get(app.shownTabId) : null;
  const tabId = tab ? tab.id : null;
  if (stream.viewing !== tabId) {
    stream.view(tabId);
    app.reviewed = tab && tab.unread ? tabId : null;
  } else if (tab && tab.unread && app.reviewed !== tabId) {
    app.reviewed = tabId;
    stream.view(tabId, { again: true });
  } else if (!tab || !tab.unread) {
    app.reviewed = null;
  }
}
