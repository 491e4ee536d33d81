// @ts-check
// The workspace and its stream: the page's start, opening a workspace (its websocket, the
// drafts and archive it leaves flushed), losing access to it, the task list's next page
// and a linked task not on it, the agents, creating a task or a workspace. Calls the API
// and the stream, changes the state, renders.
// Effects may also move the focus, read what a form holds and disable the button that
// submitted it; what the page says is drawn by the views.
// Imports effects/archive.js, effects/tabs.js, effects/drafts.js, the views, state.js,
// schedule.js, dom.js, api.js and stream.js.

import { api, apiList, asApiError } from "../api.js";
import { part } from "../dom.js";
import { render, scheduleRender } from "../schedule.js";
import {
  app,
  clearHash,
  forgetStoredWorkspace,
  readHash,
  storeWorkspace,
  storedWorkspace,
} from "../state.js";
import { NO_ACCESS, WorkbenchStream } from "../stream.js";
import { notify, renderConnection } from "../views/common.js";
import { els } from "../views/elements.js";
import { closeMembers } from "../views/members.js";
import {
  renderAgentChoice,
  renderWorkspacePicker,
  resetTaskForm,
  setDrawer,
  showTaskFormHint,
} from "../views/page.js";
import { archivedElsewhere, checkVanishedTask, commitArchive } from "./archive.js";
import { flushDrafts, reconcileDrafts } from "./drafts.js";
import { addFetchedTask, select } from "./tabs.js";

/** The page's start: the agents, the workspaces, and the one to open (the URL's, the last
 * one opened here, or the first). */
export async function start() {
  renderAgentChoice();
  loadAgents();
  try {
    app.workspaces = await apiList("/api/workspaces/");
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not load your workspaces: ${error.message}`);
    renderConnection("offline", "");
    return;
  }
  const wanted = readHash();
  const stored = storedWorkspace();
  const known = (id) => app.workspaces.some((workspace) => workspace.id === id);
  const pick = [wanted.workspace, stored].find(known) ?? app.workspaces[0]?.id ?? null;
  if (pick === wanted.workspace) {
    app.taskId = wanted.task;
    app.tabId = wanted.tab;
  }
  renderWorkspacePicker();
  if (pick === null) {
    renderConnection("offline", "no workspace");
    render();
    part(els.noWorkspace, "input").focus();
    return;
  }
  openWorkspace(pick);
}

/**
 * Open the workspace on the given task and tab (none: its newest task).
 * @param {number} workspaceId
 * @param {number | null} [taskId]
 * @param {string | null} [tabId]
 */
export function openWorkspaceAt(workspaceId, taskId = null, tabId = null) {
  app.taskId = taskId;
  app.tabId = tabId;
  openWorkspace(workspaceId);
}

/** The URL fragment changed (back, forward, a pasted link): show what it names. */
export function followHash() {
  const wanted = readHash();
  if (wanted.workspace && wanted.workspace !== app.workspaceId) {
    openWorkspaceAt(wanted.workspace, wanted.task, wanted.tab);
  } else {
    select(wanted.task, wanted.tab);
  }
}

/**
 * @param {number} workspaceId
 */
export function openWorkspace(workspaceId) {
  if (app.stream) {
    flushDrafts();
    commitArchive();
    app.stream.stop();
  }
  app.archivedNotice = null;
  app.knownTabs = new Map();
  closeMembers({ restoreFocus: false });
  app.members = { error: "", status: "", busy: new Set() };
  app.noAccess = null;
  app.workspaceId = workspaceId;
  app.transcripts.clear();
  app.shownTabId = null;
  app.reviewed = null;
  app.modelFeedback = null;
  storeWorkspace(workspaceId);
  renderWorkspacePicker();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const stream = new WorkbenchStream(`${scheme}://${location.host}/ws/workspaces/${workspaceId}/`, {
    onStatus: connectionChanged,
    onChange: (change) => {
      if (change.kind === "snapshot") {
        if (!change.first) {
          // Message events missed while disconnected are not in a snapshot: reload transcripts.
          app.transcripts.clear();
          // Nor is an archive: the shown task missing from it is asked after (its drafts
          // read before their saves can learn that its tabs are closed).
          checkVanishedTask(stream.model);
        }
        reconcileDrafts(workspaceId);
        const model = stream.model;
        if (change.first && app.taskId && !model.tasks.has(app.taskId) && model.next) {
          loadLinkedTask(app.taskId);
        }
      }
      // Removed: the server closes the socket (4403) right after this event.
      const { frame } = change;
      if (frame && frame.event === "task.updated" && frame.data.archived) archivedElsewhere(frame.data);
      if (frame && frame.event === "member.removed" && frame.data.user === stream.model.me) {
        lostAccess({ left: app.members.leaving === workspaceId });
        return;
      }
      scheduleRender();
    },
  });
  app.stream = stream;
  stream.start();
  render();
}

/**
 * The stream's status, shown. Removed from the workspace (or logged out elsewhere: the API
 * then answers 401, and we go to the login page): the page says so.
 * @param {import("../types/workbench").ConnectionStatus} status
 * @param {string} detail
 */
function connectionChanged(status, detail) {
  renderConnection(status, detail);
  if (status === "offline" && detail === NO_ACCESS) lostAccess();
}

/**
 * This page may no longer show the workspace (removed by an owner, or left): say so, drop
 * what it showed, and offer the workspaces still mine (the list is fetched again).
 * @param {{left?: boolean}} [options]
 */
export async function lostAccess({ left = false } = {}) {
  const workspaceId = app.workspaceId;
  if (workspaceId === null || app.noAccess) return;
  const name =
    app.workspaces.find((workspace) => workspace.id === workspaceId)?.name ??
    app.stream?.model.workspace?.name ??
    `workspace ${workspaceId}`;
  const removed = Boolean(app.stream && app.stream.snapshots > 0); // else: never let in
  if (app.stream) {
    app.stream.stop();
    app.stream = null;
  }
  closeMembers({ restoreFocus: false });
  app.noAccess = { id: workspaceId, name, left, removed, loading: true };
  app.archivedNotice = null;
  app.workspaceId = null;
  app.taskId = null;
  app.tabId = null;
  app.shownTabId = null;
  forgetStoredWorkspace(workspaceId);
  clearHash();
  renderConnection("offline", NO_ACCESS);
  render();
  els.noAccessHeading.focus();
  try {
    app.workspaces = await apiList("/api/workspaces/");
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not load your workspaces: ${error.message}`);
  }
  if (app.noAccess?.id !== workspaceId) return; // another workspace was opened meanwhile
  app.noAccess.loading = false;
  renderWorkspacePicker();
  render();
}

/** A task the URL names that is not on the workbench's first page: fetched on its own
 * (with its open tabs), so a link to an old task opens it rather than the newest.
 * @param {number} taskId
 */
async function loadLinkedTask(taskId) {
  const stream = app.stream;
  if (!stream) return;
  app.loadingLinked = taskId;
  try {
    const [task, tabs] = await Promise.all([
      api("GET", `/api/tasks/${taskId}/`),
      apiList(`/api/tasks/${taskId}/tabs/`),
    ]);
    addFetchedTask(stream, task, tabs);
  } catch {
    // Gone, or never in this workspace: the newest task is shown instead.
  } finally {
    if (app.loadingLinked === taskId) app.loadingLinked = null;
    scheduleRender();
  }
}

/** The workbench's next page (the snapshot holds the first): on a click, or once the
 * button scrolls into view. */
export async function loadMoreTasks() {
  const stream = app.stream;
  if (!stream) return;
  const path = stream?.model.next;
  if (!path || app.loadingPage !== null) return;
  app.loadingPage = path;
  scheduleRender();
  try {
    const page = await api("GET", path);
    if (app.stream === stream) stream.model.loadPage(path, page);
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not load more tasks: ${error.message}`);
  } finally {
    app.loadingPage = null;
    scheduleRender();
  }
}

/** The agents a task may run (GET /api/agents/), for the new-task form's choice. */
async function loadAgents() {
  try {
    app.agents = await api("GET", "/api/agents/");
  } catch {
    app.agents = null; // the form keeps offering the default agent
  }
  renderAgentChoice();
}

/**
 * Create a task. With a prompt, the server also opens its first tab and queues the prompt
 * there (`first_tab`, `first_message`): that tab is shown at once, the prompt waiting in it
 * until the agent is ready. A title left empty is the prompt's first line.
 * @param {HTMLFormElement} form
 */
export async function createTask(form) {
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  const prompt = (data.prompt || "").trim();
  let title = (data.title || "").trim();
  if (!title && prompt) {
    const line = prompt.split("\n")[0].trim();
    title = line.length > 80 ? `${line.slice(0, 79)}…` : line;
  }
  if (!title) {
    showTaskFormHint("Give the task a title, or say what the agent should work on.");
    els.taskTitle.focus();
    return;
  }
  showTaskFormHint("");
  const stream = app.stream;
  const button = part(form, "button[type=submit]", HTMLButtonElement);
  button.disabled = true;
  try {
    const task = await api("POST", `/api/workspaces/${app.workspaceId}/tasks/`, {
      title,
      repository: (data.repository || "").trim(),
      branch: (data.branch || "").trim(),
      agent: data.agent || "mock",
      ...(prompt ? { prompt: data.prompt } : {}),
    });
    if (!stream || stream !== app.stream) return;
    const { first_tab: firstTab, first_message: firstMessage, ...created } = task;
    stream.model.upsertTask(created);
    if (firstTab) stream.model.upsertTab(firstTab);
    if (firstMessage) stream.model.upsertMessage(firstMessage);
    resetTaskForm(form);
    select(created.id, firstTab ? firstTab.id : null);
    if (document.body.dataset.drawer === "open") {
      setDrawer(false, { focus: false });
      els.main.focus();
    }
    if (firstTab) els.composerInput.focus();
  } catch (caught) {
    const error = asApiError(caught);
    // The form keeps what was typed.
    const fields = Object.entries(error.fields || {}).map(([name, problems]) => `${name}: ${[problems].flat().join(" ")}`);
    showTaskFormHint(`Could not create the task: ${fields.length ? fields.join("; ") : error.message}`);
  } finally {
    button.disabled = false;
  }
}

/**
 * @param {HTMLFormElement} form
 */
export async function createWorkspace(form) {
  const name = String(new FormData(form).get("name")).trim();
  try {
    const workspace = await api("POST", "/api/workspaces/", { name });
    app.workspaces.push(workspace);
    form.reset();
    openWorkspace(workspace.id);
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not create the workspace: ${error.message}`);
  }
}
