// @ts-check
// The members panel's actions: opening it, adding a member, changing a role, removing a
// member, leaving the workspace (then the page has lost access to it). Calls the API,
// changes the state, schedules a render.
// Effects may also move the focus, read what a form holds and disable the button that
// submitted it; what the page says is drawn by the views.
// Imports effects/workspace.js, the views, state.js, schedule.js, dom.js and api.js.

import { api, asApiError } from "../api.js";
import { part } from "../dom.js";
import { scheduleRender } from "../schedule.js";
import { app, membersMessage, openModel } from "../state.js";
import { els } from "../views/elements.js";
import { askToLeave, showMembersDialog } from "../views/members.js";
import { lostAccess } from "./workspace.js";

/** Open the panel (while a workspace is shown), on a fresh state. */
export function openMembers() {
  if (!app.stream || app.stream.snapshots === 0 || els.membersDialog.open) return;
  app.members = { error: "", status: "", busy: new Set() };
  showMembersDialog(app.stream.model);
}

export async function addMember() {
  const workspaceId = app.workspaceId;
  const who = els.memberAddWho.value.trim();
  if (!who) {
    els.memberAddWho.focus();
    return;
  }
  const role = els.memberAddRole.value;
  const body = who.includes("@") ? { email: who, role } : { username: who, role };
  const button = part(els.memberAdd, "button[type=submit]", HTMLButtonElement);
  button.disabled = true;
  membersMessage({ status: `Adding ${who}…` });
  scheduleRender();
  try {
    const added = await api("POST", `/api/workspaces/${workspaceId}/members/`, body);
    // The list itself follows the member.updated event, like every other page's.
    membersMessage({ status: `Added ${added.username} as ${added.role}.` });
    els.memberAdd.reset();
  } catch (caught) {
    const error = asApiError(caught);
    membersMessage({ error: `Could not add ${who}: ${error.message}` });
  } finally {
    button.disabled = false;
    scheduleRender();
    els.memberAddWho.focus();
  }
}

/**
 * @param {number} userId
 * @param {string} role
 */
export async function changeRole(userId, role) {
  const workspaceId = app.workspaceId;
  const member = openModel().members.get(userId);
  if (!member || member.role === role) return;
  app.members.busy.add(userId);
  membersMessage({ status: `Changing ${member.username}'s role…` });
  scheduleRender();
  try {
    const changed = await api("PATCH", `/api/workspaces/${workspaceId}/members/${userId}/`, { role });
    membersMessage({ status: `${changed.username} is now ${changed.role === "owner" ? "an owner" : "a member"}.` });
  } catch (caught) {
    const error = asApiError(caught);
    membersMessage({ error: `Could not change ${member.username}'s role: ${error.message}` });
  } finally {
    app.members.busy.delete(userId);
    scheduleRender(); // a refusal puts the select back on the role the member has
  }
}

/**
 * @param {number} userId
 */
export async function removeMember(userId) {
  const workspaceId = app.workspaceId;
  const member = openModel().members.get(userId);
  if (!member || app.members.busy.has(userId)) return;
  app.members.busy.add(userId);
  membersMessage({ status: `Removing ${member.username}…` });
  scheduleRender();
  try {
    await api("DELETE", `/api/workspaces/${workspaceId}/members/${userId}/`);
    membersMessage({ status: `Removed ${member.username}.` });
    els.memberAddWho.focus(); // their row (and the focused button) goes away
  } catch (caught) {
    const error = asApiError(caught);
    membersMessage({ error: `Could not remove ${member.username}: ${error.message}` });
  } finally {
    app.members.busy.delete(userId);
    scheduleRender();
  }
}

export async function leaveWorkspace() {
  const workspaceId = app.workspaceId;
  const model = openModel();
  els.memberLeaveYes.disabled = true;
  app.members.leaving = workspaceId;
  try {
    await api("DELETE", `/api/workspaces/${workspaceId}/members/${model.me}/`);
    lostAccess({ left: true });
  } catch (caught) {
    const error = asApiError(caught);
    app.members.leaving = null;
    membersMessage({ error: `Could not leave: ${error.message}` });
    askToLeave(false);
    scheduleRender();
  } finally {
    els.memberLeaveYes.disabled = false;
  }
}
