// @ts-check
// Nothing typed is lost: the dialog that asks before closing a tab with a draft or queued
// prompts, the Undo toast of an archive, and the notice of a task archived elsewhere (its
// drafts to copy). Reads the state, writes the DOM, never requests. Imports
// views/elements.js, state.js and dom.js.

import { find, h, part, reconcile, setAttr, setText, show } from "../dom.js";
import { app } from "../state.js";
import { els } from "./elements.js";

/**
 * Ask, in the page, before closing a tab that holds a draft or queued prompts.
 * @param {string} title
 * @param {string} draft
 * @param {number} queued
 */
export function showCloseDialog(title, draft, queued) {
  setText(els.closeHeading, `Close “${title}”?`);
  const lost = [];
  if (draft.trim()) lost.push("its draft is discarded");
  if (queued) lost.push(`${queued === 1 ? "1 prompt" : `${queued} prompts`} waiting for the agent will not be sent`);
  setText(els.closeDetail, `Closing it cannot be undone: ${lost.join(", and ")}.`);
  setText(els.closeDraft, draft);
  show(els.closeDraft, Boolean(draft.trim()));
  els.closeDialog.showModal(); // the focus goes to "Keep tab"; Escape keeps it too
}

export function hideCloseDialog() {
  els.closeDialog.close();
}

/**
 * The archive's Undo toast, saying what was archived.
 * @param {string} text
 */
export function showUndoToast(text) {
  setText(els.toastText, text);
  show(els.toast, true);
}

/**
 * The toast gone; the focus it held (refocus) goes to the main pane.
 * @param {{refocus?: boolean}} [options]
 */
export function hideUndoToast({ refocus = false } = {}) {
  const hadFocus = refocus && els.toast.contains(document.activeElement);
  show(els.toast, false);
  if (hadFocus) els.main.focus();
}

export function renderArchivedNotice() {
  const notice = app.archivedNotice;
  show(els.taskArchived, Boolean(notice));
  if (!notice) return;
  setText(els.taskArchivedHeading, `“${notice.title}” was archived`);
  const count = notice.drafts.length;
  setText(
    els.taskArchivedDetail,
    count
      ? `It was archived elsewhere (another page or member), so its tabs are closed. ${count === 1 ? "The draft you had typed is" : `The ${count} drafts you had typed are`} kept below until you dismiss this: copy what you need.`
      : "It was archived elsewhere (another page or member), so its tabs are closed. None of them held a draft of yours.",
  );
  show(els.taskArchivedDrafts, count > 0);
  reconcile(
    els.taskArchivedDrafts,
    notice.drafts,
    (draft) => draft.tabId,
    (draft) => {
      const id = `archived-draft-${draft.tabId}`;
      return h(
        "li",
        { class: "archived-draft" },
        h("label", { for: id }),
        h("textarea", { id, readonly: true, rows: 4, spellcheck: "false" }),
        h(
          "div",
          { class: "archived-draft-actions" },
          h("button", { type: "button", dataset: { action: "copy" } }, "Copy"),
          h("span", { class: "copy-status", role: "status" }),
        ),
      );
    },
    (li, draft) => {
      setText(part(li, "label"), `Draft in “${draft.title}”`);
      const area = part(li, "textarea", HTMLTextAreaElement);
      if (area.value !== draft.text) area.value = draft.text;
      setAttr(part(li, "button"), "aria-label", `Copy the draft in ${draft.title}`);
      setText(part(li, ".copy-status"), notice.copied === draft.tabId ? "Copied" : "");
    },
  );
}

/**
 * No clipboard access: the draft's text is selected instead, for Ctrl+C.
 * @param {string} tabId
 */
export function selectArchivedDraft(tabId) {
  const area = find(els.taskArchivedDrafts, `li[data-key="${tabId}"] textarea`, HTMLTextAreaElement);
  area?.focus();
  area?.select();
  const status = find(els.taskArchivedDrafts, `li[data-key="${tabId}"] .copy-status`);
  if (status) setText(status, "Selected: press Ctrl+C to copy");
}
