// @ts-check
// The shown tab's composer (its draft, the queueing hint, the running turn and Stop) and
// its model (a list once the sandbox offers models, else free text, with what the session
// runs). Reads the state, writes the DOM, never requests: the draft the composer leaves is
// returned for the effects to save. Imports views/elements.js, views/common.js, state.js
// and dom.js.

import { h, setAttr, setText, show } from "../dom.js";
import { NEW_TAB_SHORTCUT, QUEUED_UNTIL_READY, app, drafts, modelChoices, modelName } from "../state.js";
import { formatElapsed } from "./common.js";
import { els } from "./elements.js";

/** @typedef {import("../types/workbench").Task} Task */
/** @typedef {import("../types/workbench").Tab} Tab */
/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * The composer of the shown tab: its draft, whether sending queues, the running turn with
 * Stop, why the last prompt was refused. Returns the tab whose draft the composer just
 * left (the effects save it), if it switched tabs. Which tab's draft the input holds is
 * kept on the input itself (data-tab).
 * @returns {string | null}
 * @param {WorkbenchModel} model
 * @param {Tab} tab
 */
export function renderComposer(model, tab) {
  const input = els.composerInput;
  /** @type {string | null} */
  let left = null;
  if (input.dataset.tab !== tab.id) {
    left = input.dataset.tab || null;
    input.dataset.tab = tab.id;
    input.value = drafts.text(tab);
  } else if (
    document.activeElement !== input &&
    !drafts.has(tab.id) &&
    input.value !== tab.draft
  ) {
    input.value = tab.draft; // edited on another page
  }
  // Every open tab takes prompts: a pending or failed one queues them until it is ready.
  const ready = tab.state === "ready";
  els.composer.dataset.state = tab.state;
  els.composerSend.disabled = app.sending;
  setAttr(els.composerSend, "aria-describedby", ready ? null : "composer-reason");
  const waiting = model.transcript(tab.id).filter((m) => m.role === "user" && m.state === "queued").length;
  const queue = waiting ? ` ${waiting === 1 ? "1 prompt is" : `${waiting} prompts are`} waiting.` : "";
  setText(
    els.composerReason,
    ready
      ? `Ctrl+Enter sends · ${NEW_TAB_SHORTCUT} opens a new tab.`
      : `${QUEUED_UNTIL_READY[tab.state] ?? ""}${queue}`,
  );
  setAttr(els.composerReason, "data-blocked", !ready);
  // The running turn: a timer, and Stop (which keeps the session).
  const since = app.running.get(tab.id);
  show(els.turn, Boolean(since));
  if (since && els.turnElapsed.dataset.since !== since) {
    els.turnElapsed.dataset.since = since;
    setText(els.turnElapsed, formatElapsed((Date.now() - Date.parse(since)) / 1000));
  }
  const stopping = app.stopping.has(tab.id);
  els.turnStop.disabled = stopping;
  setText(els.turnStop, stopping ? "Stopping…" : "Stop");
  const error = app.sendError && app.sendError.tab === tab.id ? app.sendError.text : "";
  setText(els.composerError, error);
  show(els.composerError, Boolean(error));
  return left;
}

/**
 * @param {Task} task
 * @param {Tab} tab
 */
export function renderModel(task, tab) {
  const choices = modelChoices(task);
  const saving = app.modelSaving && app.modelSaving.tab === tab.id ? app.modelSaving : null;
  const chosen = saving ? saving.value : tab.model;
  const listed = choices.models.length > 0;
  const select = els.modelSelect;
  show(select, listed);
  show(els.modelForm, !listed);
  setAttr(els.modelLabel, "for", listed ? "model-select" : "model-input");
  if (listed) {
    // Rebuilt only when what it lists changes, so an open select is left alone. A model
    // chosen before the choices were known, and not among them, stays listed as it is.
    const key = JSON.stringify([choices, chosen, tab.model]);
    if (app.modelKey !== key) {
      app.modelKey = key;
      const values = new Set(choices.models.map((choice) => choice.value));
      const extra = [...new Set([chosen, tab.model])].filter((value) => value && !values.has(value));
      select.replaceChildren(
        h("option", { value: "" }, modelName("", choices)),
        ...choices.models.map((choice) => h("option", { value: choice.value }, choice.name || choice.value)),
        ...extra.map((value) => h("option", { value }, `${value} (not offered)`)),
      );
    }
    if (select.value !== chosen) select.value = chosen;
  } else {
    app.modelKey = "";
    const input = els.modelInput;
    setAttr(input, "placeholder", modelName("", choices));
    // Not while the user is typing a name: only what the server holds, once they are done.
    if (document.activeElement !== input && !saving && input.dataset.tab !== `${tab.id}:${tab.model}`) {
      input.value = tab.model;
    }
    input.dataset.tab = `${tab.id}:${tab.model}`;
  }
  const feedback = app.modelFeedback && app.modelFeedback.tab === tab.id ? app.modelFeedback : null;
  const differs =
    tab.state === "ready" && tab.session_model && tab.session_model !== (tab.model || choices.defaultModel);
  setText(els.modelNote, modelNote(tab, choices, { saving, feedback }));
  els.modelNote.dataset.tone = feedback?.error ? "error" : differs ? "warn" : "";
}

/** How the last change went, what the choice does in this state, what the session runs. */
function modelNote(tab, choices, { saving, feedback }) {
  const parts = [];
  if (saving) parts.push("Saving…");
  else if (feedback) parts.push(feedback.text);
  if (tab.state === "pending_provision" || tab.state === "pending_session_create") {
    parts.push("Applies when the session starts.");
  } else if (tab.state === "error") {
    parts.push("Changing it retries the tab.");
  } else if (tab.state === "ready" && tab.session_model) {
    const wanted = tab.model || choices.defaultModel;
    parts.push(
      tab.session_model === wanted
        ? `The session runs ${modelName(tab.session_model, choices)}.`
        : `The session still runs ${modelName(tab.session_model, choices)}, not ${modelName(tab.model, choices)}.`,
    );
  }
  return parts.join(" ");
}

/** The composer shows no tab: the next one shown fills it with its draft afresh. */
export function clearComposerTab() {
  delete els.composerInput.dataset.tab;
}

/**
 * What the user has typed in the tab and not sent: the composer's text when it is shown.
 * @param {Tab} tab
 */
export function draftText(tab) {
  return tab.id === app.shownTabId ? els.composerInput.value : drafts.text(tab);
}
