// @ts-check
// The members panel (a modal dialog): the list, roles editable by owners, adding someone,
// and leaving with its confirmation. Reads the state, writes the DOM, never requests.
// Imports views/elements.js, state.js and dom.js.

import { find, h, part, reconcile, setAttr, setText, show } from "../dom.js";
import { app, myMembership } from "../state.js";
import { els } from "./elements.js";

/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * @param {WorkbenchModel} model
 */
export function renderMembers(model) {
  const me = myMembership(model);
  const owner = me?.role === "owner";
  const state = app.members;
  const workspaceName = model.workspace?.name ?? "this workspace";
  setText(els.membersHeading, `Members of ${workspaceName}`);
  setText(els.membersError, state.error);
  show(els.membersError, Boolean(state.error));
  setText(els.membersStatus, state.status);
  // No longer an owner (demoted meanwhile): focus must not stay on the form that goes away.
  if (!owner && els.memberAdd.contains(document.activeElement)) {
    part(els.membersDialog, ".dialog-close").focus();
  }
  show(els.memberAdd, owner);
  setText(els.memberLeaveQuestion, `Leave ${workspaceName}? You lose access to its tasks and tabs until an owner adds you again.`);
  // A row moved (a role changed the order) loses focus: put it back where it was.
  const active = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const focused = active?.closest("#member-list li");
  const focusedKey = focused instanceof HTMLElement ? focused.dataset.key : undefined;
  const focusedAction = active?.dataset?.action;
  reconcile(
    els.memberList,
    model.memberList(),
    (member) => member.user,
    () =>
      h(
        "li",
        { class: "member" },
        h(
          "div",
          { class: "member-who" },
          h("span", { class: "member-username" }),
          h("span", { class: "member-name" }),
          h("span", { class: "badge member-you", hidden: true }, "you"),
        ),
        h("span", { class: "badge member-role" }),
        h(
          "select",
          { class: "member-role-select", dataset: { action: "role" } },
          h("option", { value: "owner" }, "owner"),
          h("option", { value: "member" }, "member"),
        ),
        h("button", { type: "button", class: "member-remove", dataset: { action: "remove" } }, "Remove"),
      ),
    (li, member) => {
      const mine = member.user === model.me;
      li.dataset.user = String(member.user);
      setAttr(li, "data-me", mine ? "true" : null);
      setText(part(li, ".member-username"), member.username);
      setText(part(li, ".member-name"), member.name);
      show(part(li, ".member-name"), Boolean(member.name));
      show(part(li, ".member-you"), mine);
      const role = part(li, ".member-role");
      role.dataset.role = member.role;
      setText(role, member.role);
      show(role, !owner);
      const busy = state.busy.has(member.user);
      const select = part(li, ".member-role-select", HTMLSelectElement);
      show(select, owner);
      setAttr(select, "aria-label", `Role of ${member.username}${mine ? " (you)" : ""}`);
      if (!busy && select.value !== member.role) select.value = member.role;
      const remove = part(li, ".member-remove", HTMLButtonElement);
      show(remove, owner && !mine); // leaving is the button below, with its confirmation
      setAttr(remove, "aria-label", `Remove ${member.username}`);
      remove.disabled = busy;
    },
  );
  if (focusedKey && document.activeElement === document.body) {
    const row = find(els.memberList, `li[data-key="${focusedKey}"]`);
    (row ? find(row, `[data-action="${focusedAction}"]`) : null)?.focus();
  }
}

/**
 * The panel, opened on a fresh form; the focus goes where an owner or a member goes.
 * @param {WorkbenchModel} model
 */
export function showMembersDialog(model) {
  show(els.memberLeaveConfirm, false);
  els.memberAdd.reset();
  renderMembers(model);
  els.membersDialog.showModal();
  // Owners came to add someone, most likely; everyone else to read the list.
  const owner = myMembership(model)?.role === "owner";
  (owner ? els.memberAddWho : part(els.membersDialog, ".dialog-close")).focus();
}

/**
 * @param {{restoreFocus?: boolean}} [options]
 */
export function closeMembers({ restoreFocus = true } = {}) {
  if (!els.membersDialog.open) return;
  els.membersDialog.close();
  if (restoreFocus) els.membersButton.focus();
}

/**
 * @param {boolean} asking
 */
export function askToLeave(asking) {
  show(els.memberLeaveConfirm, asking);
  show(els.memberLeave, !asking);
  (asking ? els.memberLeaveNo : els.memberLeave).focus();
}
