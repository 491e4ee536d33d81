// @ts-check
// The browser workbench: workspaces, tasks and their tabs, live. It uses only the public
// REST API (api.js) and the websocket stream (stream.js); the URL fragment says what is
// shown (#workspace=1&task=2&tab=<uuid>), so a refresh restores the same view.

import { api, apiAll, apiList, asApiError, loginAgain, withRetries } from "./api.js";
import { closestTarget, find, h, part, reconcile, setAttr, setText, show, targetMatches } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { NO_ACCESS, WorkbenchStream } from "./stream.js";

const WORKSPACE_KEY = "workbench.workspace";
const DRAFTS_KEY = "workbench.drafts";
const DRAFT_SAVE_DELAY_MS = 600;
// How long an archive waits behind its Undo before it is sent.
const UNDO_MS = 5000;
// Opens a new tab on the shown task, wherever the focus is (Alt+N: Chromium and Firefox
// bind nothing to it; Alt+T is Firefox's Tools menu, Ctrl+Alt+N is AltGr+N, a letter, on
// some layouts). Said in the button's title and the composer's hint.
const NEW_TAB_SHORTCUT = "Alt+N";

const TAB_STATES = {
  pending_provision: "preparing",
  pending_session_create: "starting",
  ready: "ready",
  error: "error",
};
// What sending does while the tab is not ready: the server queues the prompt (202) and
// delivers it, in order, once the tab's session is ready.
const QUEUED_UNTIL_READY = {
  pending_provision:
    "Queued prompts are sent once the agent is ready (the environment is still being prepared).",
  pending_session_create: "Queued prompts are sent once the agent is ready (its session is starting).",
  error: "Queued prompts are sent once the agent is ready: retry the tab to get it there.",
};
const SANDBOX_STATES = {
  provisioning: "Provisioning",
  ready: "Ready",
  failed: "Failed",
  destroying: "Shutting down",
  destroyed: "Shut down",
};
// A failure in plain words: the sandbox's specific cause when provisioning failed, else the
// tab's own code; what fixes it follows. The raw text stays behind "Details".
const SANDBOX_FAILURES = {
  clone_failed: ["The repository could not be cloned", "Check the repository's URL or path and its branch."],
  clone_timeout: ["Cloning the repository took too long", "A smaller repository or a faster host may help; retry."],
  repository_refused: [
    "This repository is not allowed here",
    "Use a public https or ssh URL, or a local path under the directories this service allows.",
  ],
  server_exited: ["The agent's server stopped while starting", "Retrying starts a fresh one."],
  server_start_failed: ["The agent's server could not be started", "Retrying starts a fresh one."],
  health_timeout: ["The agent's server did not answer in time", "Retrying starts a fresh one."],
  agent_install_failed: ["The agent could not be installed", "Check the task's agent; retrying installs it again."],
  agent_config_failed: ["The agent could not be configured", "Retrying configures it again."],
  sandbox_agent_missing: ["The sandbox-agent program is missing on the server", "An operator has to install it."],
  remote_unreachable: ["The remote sandbox host could not be reached", "Retry once it is back."],
  remote_command_failed: ["A command on the remote sandbox host failed", "Retrying runs it again."],
};
const TAB_FAILURES = {
  provision_failed: ["The environment could not be prepared", ""],
  session_failed: ["The agent's session could not be started", "Retrying starts a new session."],
  session_lost: ["The agent's session was lost", "Retrying starts a new session."],
  sandbox_lost: ["The environment was lost", "Retrying prepares a new one."],
  timeout: ["Preparing this tab took too long", "Retrying starts over."],
  stalled: ["This tab stopped making progress", "Retrying starts over."],
};
// Failures whose fix may be another repository or branch: offered "Edit repository & retry".
const PROVISIONING_FAILURES = new Set(["provision_failed", "timeout", "stalled"]);

const MESSAGE_STATES = {
  queued: "Waiting for the agent…",
  sending: "sending…",
  streaming: "replying…",
  failed: "failed",
};

/**
 * The shell's element of that id, of that type (the template always has it).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{new (): T, prototype: T}} [type]
 * @returns {T}
 */
function byId(id, type) {
  const el = document.getElementById(id);
  if (!el || (type && !(el instanceof type))) throw new Error(`The page has no ${type?.name ?? "element"} #${id}`);
  return /** @type {T} */ (el);
}

const els = {
  connection: byId("connection"),
  workspaceSelect: byId("workspace-select", HTMLSelectElement),
  notice: byId("notice"),
  sidebar: byId("sidebar"),
  drawerToggle: byId("drawer-toggle", HTMLButtonElement),
  drawerBackdrop: byId("drawer-backdrop"),
  taskForm: byId("task-form", HTMLFormElement),
  taskTitle: byId("task-title", HTMLInputElement),
  taskPrompt: byId("task-prompt", HTMLTextAreaElement),
  taskAgent: byId("task-agent", HTMLSelectElement),
  taskAgentNote: byId("task-agent-note"),
  taskFormHint: byId("task-form-hint"),
  taskList: byId("task-list", HTMLUListElement),
  taskEmpty: byId("task-empty"),
  taskMore: byId("task-more", HTMLButtonElement),
  noWorkspace: byId("no-workspace"),
  workspaceForm: byId("workspace-form", HTMLFormElement),
  noTask: byId("no-task"),
  taskView: byId("task-view"),
  taskHeading: byId("task-heading"),
  taskMeta: byId("task-meta"),
  provisioning: byId("provisioning", HTMLDetailsElement),
  provisioningSummary: byId("provisioning-summary"),
  taskSteps: byId("task-steps", HTMLOListElement),
  tabStrip: byId("tab-strip", HTMLUListElement),
  newTab: byId("new-tab", HTMLButtonElement),
  noTab: byId("no-tab"),
  tabPane: byId("tab-pane"),
  main: byId("main"),
  tabPaneHeading: byId("tab-pane-heading"),
  tabStatus: byId("tab-status"),
  repoForm: byId("repo-form", HTMLFormElement),
  repoRepository: byId("repo-form-repository", HTMLInputElement),
  repoBranch: byId("repo-form-branch", HTMLInputElement),
  repoError: byId("repo-form-error"),
  repoCancel: byId("repo-form-cancel", HTMLButtonElement),
  transcript: byId("transcript", HTMLOListElement),
  composer: byId("composer", HTMLFormElement),
  composerInput: byId("composer-input", HTMLTextAreaElement),
  composerReason: byId("composer-reason"),
  composerSend: byId("composer-send", HTMLButtonElement),
  composerError: byId("composer-error"),
  turn: byId("turn"),
  turnElapsed: byId("turn-elapsed"),
  turnStop: byId("turn-stop", HTMLButtonElement),
  modelLabel: byId("model-label"),
  modelSelect: byId("model-select", HTMLSelectElement),
  modelForm: byId("model-form", HTMLFormElement),
  modelInput: byId("model-input", HTMLInputElement),
  modelNote: byId("model-note"),
  noAccess: byId("no-access"),
  noAccessHeading: byId("no-access-heading"),
  noAccessDetail: byId("no-access-detail"),
  noAccessLoading: byId("no-access-loading"),
  noAccessOthers: byId("no-access-others"),
  noAccessList: byId("no-access-list", HTMLUListElement),
  membersButton: byId("members-button", HTMLButtonElement),
  membersDialog: byId("members-dialog", HTMLDialogElement),
  membersHeading: byId("members-heading"),
  membersError: byId("members-error"),
  membersStatus: byId("members-status"),
  memberList: byId("member-list", HTMLUListElement),
  memberAdd: byId("member-add", HTMLFormElement),
  memberAddWho: byId("member-add-who", HTMLInputElement),
  memberAddRole: byId("member-add-role", HTMLSelectElement),
  memberLeave: byId("member-leave", HTMLButtonElement),
  memberLeaveConfirm: byId("member-leave-confirm"),
  memberLeaveQuestion: byId("member-leave-question"),
  memberLeaveYes: byId("member-leave-yes", HTMLButtonElement),
  memberLeaveNo: byId("member-leave-no", HTMLButtonElement),
  taskArchive: byId("task-archive", HTMLButtonElement),
  taskArchived: byId("task-archived"),
  taskArchivedHeading: byId("task-archived-heading"),
  taskArchivedDetail: byId("task-archived-detail"),
  taskArchivedDrafts: byId("task-archived-drafts", HTMLUListElement),
  taskArchivedDismiss: byId("task-archived-dismiss", HTMLButtonElement),
  closeDialog: byId("close-dialog", HTMLDialogElement),
  closeHeading: byId("close-heading"),
  closeDetail: byId("close-detail"),
  closeDraft: byId("close-draft"),
  closeYes: byId("close-yes", HTMLButtonElement),
  closeNo: byId("close-no", HTMLButtonElement),
  toast: byId("toast"),
  toastText: byId("toast-text"),
  toastUndo: byId("toast-undo", HTMLButtonElement),
};

/** @typedef {import("./types/workbench").Task} Task */
/** @typedef {import("./types/workbench").Tab} Tab */
/** @typedef {import("./types/workbench").Message} Message */
/** @typedef {import("./types/workbench").Member} Member */
/** @typedef {import("./types/workbench").Sandbox} Sandbox */
/** @typedef {import("./types/workbench").Step} Step */
/** @typedef {import("./types/workbench").Workspace} Workspace */
/** @typedef {import("./types/workbench").ModelChoice} ModelChoice */
/** @typedef {import("./model.js").WorkbenchModel} WorkbenchModel */
/** @typedef {import("./api.js").ApiError} ApiError */

/**
 * Everything the page holds besides the workbench's model (the stream's).
 * @typedef {object} AppState
 * @property {Workspace[]} workspaces
 * @property {number | null} workspaceId
 * @property {number | null} taskId
 * @property {string | null} tabId
 * @property {WorkbenchStream | null} stream
 * @property {Map<number, string | null>} lastTabOfTask
 * @property {string[]} stripOrder
 * @property {Map<string, "loading" | "loaded" | "failed">} transcripts
 * @property {string | null} loadingPage
 * @property {number | null} loadingLinked
 * @property {string | null} reviewed
 * @property {Set<string>} closing
 * @property {number} opening
 * @property {number} openClicks
 * @property {number} openShown
 * @property {boolean} sending
 * @property {{tab: string, text: string} | null} sendError
 * @property {string | null} renaming
 * @property {Map<string, string>} running
 * @property {Set<string>} stopping
 * @property {Map<string, string>} renames
 * @property {string | null} shownTabId
 * @property {string} statusKey
 * @property {{id: number, name: string, left: boolean, removed: boolean, loading: boolean} | null} noAccess
 * @property {{error: string, status: string, busy: Set<number>, leaving?: number | null}} members
 * @property {{tab: string, value: string} | null} modelSaving
 * @property {{tab: string, text: string, error: boolean} | null} modelFeedback
 * @property {string} modelKey
 * @property {Map<string, boolean>} stepLogs
 * @property {string} provisioningKey
 * @property {Set<string>} errorDetails
 * @property {{name: string}[] | null} agents
 * @property {{tab: string, task: number, busy: boolean, error: string} | null} editing
 * @property {Map<string, Tab>} knownTabs
 * @property {{taskId: number, title: string, tabId: string | null, timer: ReturnType<typeof setTimeout> | null, deadline: number, remaining: number} | null} archiveUndo
 * @property {Set<number>} archivingHere
 * @property {{taskId: number, title: string, drafts: {tabId: string, title: string, text: string}[], copied: string | null} | null} archivedNotice
 * @property {string | null} closeAsk
 */

/** @type {AppState} */
const app = {
  workspaces: [],
  workspaceId: null,
  taskId: null,
  tabId: null,
  stream: null,
  lastTabOfTask: new Map(), // task id -> the tab last shown there
  stripOrder: [], // the tab ids last drawn in the strip (to pick a neighbour on close)
  transcripts: new Map(), // tab id -> "loading" | "loaded" | "failed"
  loadingPage: null, // the `next` path being fetched (one page at a time)
  loadingLinked: null, // a linked task not on the first page, being fetched on its own
  reviewed: null, // the shown tab `view` was re-sent for, once each time it turns unread
  closing: new Set(),
  opening: 0, // tab creations on their way (each click its own request)
  openClicks: 0, // clicks (or shortcuts) of "+ New tab" so far
  openShown: 0, // the latest click whose tab was shown: an earlier one answering late is not
  sending: false,
  sendError: null, // {tab, text}: why the last prompt sent from this tab was refused
  renaming: null, // the tab whose title is being edited in the strip
  running: new Map(), // tab id -> when its running turn started (a prompt `sending`)
  stopping: new Set(), // tabs whose Stop was asked for, until their turn ends
  renames: new Map(), // tab id -> the title on its way to the server (shown meanwhile)
  shownTabId: null, // the tab whose draft the composer holds
  statusKey: "",
  noAccess: null, // {id, name, left, removed, loading}: the workspace this page lost access to
  members: { error: "", status: "", busy: new Set() }, // the members panel's own state
  modelSaving: null, // {tab, value}: a model change on its way to the server
  modelFeedback: null, // {tab, text, error}: how the last model change went
  modelKey: "",
  stepLogs: new Map(), // "sandbox:step" -> whether its log is open, as the user left it
  provisioningKey: "", // the tab and phase the steps panel was last opened or closed for
  errorDetails: new Set(), // failed tabs whose raw error text is unfolded
  agents: null, // GET /api/agents/: the agents a task may run
  editing: null, // {tab, task, busy, error}: the repository form of a failed tab
  knownTabs: new Map(), // the open tabs as last drawn: their drafts outlive an archive elsewhere
  archiveUndo: null, // {taskId, title, tabId, timer, deadline, remaining}: archived, not yet sent
  archivingHere: new Set(), // tasks this page archived: their archive event is no surprise
  archivedNotice: null, // {taskId, title, drafts: [{tabId, title, text}], copied}: archived elsewhere
  closeAsk: null, // the tab whose closing (and the draft it discards) is being confirmed
};

// -- drafts: kept locally until the server has them, so nothing typed is ever lost --------

const drafts = {
  local: readJSON(DRAFTS_KEY, {}), // tab id -> {text, workspace}: typed, not yet saved
  timers: new Map(),

  has(tabId) {
    return Object.hasOwn(this.local, tabId);
  },

  text(tab) {
    return this.has(tab.id) ? this.local[tab.id].text : tab.draft;
  },

  edit(tabId, text) {
    this.local[tabId] = { text, workspace: app.workspaceId };
    this.persist();
    clearTimeout(this.timers.get(tabId));
    this.timers.set(tabId, setTimeout(() => this.save(tabId), DRAFT_SAVE_DELAY_MS));
  },

  async save(tabId, { keepalive = false } = {}) {
    clearTimeout(this.timers.get(tabId));
    this.timers.delete(tabId);
    const model = app.stream && app.stream.model;
    const tab = model && model.tabs.get(tabId);
    if (!tab || !this.has(tabId)) return;
    const text = this.local[tabId].text;
    if (text === tab.draft) {
      this.forget(tabId);
      return;
    }
    try {
      const saved = await api("PATCH", `/api/tabs/${tabId}/`, { draft: text }, { keepalive });
      model.upsertTab(saved);
      if (this.local[tabId]?.text === text) this.forget(tabId);
      scheduleRender();
    } catch (caught) {
      const error = asApiError(caught);
      if (error.code === "tab_closed" || error.status === 404) this.forget(tabId);
      // Otherwise keep the local copy: the next edit or reconnect saves it.
    }
  },

  /** After a snapshot: save what an earlier page could not, drop drafts of closed tabs. */
  reconcileWith(model, workspaceId) {
    for (const [tabId, entry] of Object.entries(this.local)) {
      if (entry.workspace !== workspaceId) continue;
      if (!model.tabs.has(tabId)) this.forget(tabId);
      else if (!this.timers.has(tabId)) this.save(tabId);
    }
  },

  flushAll({ keepalive = false } = {}) {
    for (const tabId of [...this.timers.keys()]) this.save(tabId, { keepalive });
  },

  forget(tabId) {
    clearTimeout(this.timers.get(tabId));
    this.timers.delete(tabId);
    if (this.has(tabId)) {
      delete this.local[tabId];
      this.persist();
    }
  },

  persist() {
    try {
      localStorage.setItem(DRAFTS_KEY, JSON.stringify(this.local));
    } catch {
      // Storage full or disabled: the server copy (saved shortly) still holds the draft.
    }
  },
};

function readJSON(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) ?? "null");
    return value && typeof value === "object" && !Array.isArray(value) ? value : fallback;
  } catch {
    return fallback;
  }
}

/** The open workspace's model (actions run only while one is open). */
function openModel() {
  if (!app.stream) throw new Error("No workspace is open");
  return app.stream.model;
}

// -- the URL fragment ---------------------------------------------------------------------

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return {
    workspace: Number(params.get("workspace")) || null,
    task: Number(params.get("task")) || null,
    tab: params.get("tab") || null,
  };
}

function writeHash() {
  const params = new URLSearchParams();
  if (app.workspaceId) params.set("workspace", String(app.workspaceId));
  if (app.taskId) params.set("task", String(app.taskId));
  if (app.tabId) params.set("tab", app.tabId);
  const hash = `#${params}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// -- notices and the connection indicator -------------------------------------------------

/** @type {ReturnType<typeof setTimeout> | undefined} */
let noticeTimer;

function notify(text) {
  setText(part(els.notice, ".notice-text"), text);
  show(els.notice, true);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => show(els.notice, false), 10_000);
}

function renderConnection(status, detail) {
  const labels = {
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: "Reconnecting…",
    offline: "Offline",
  };
  els.connection.dataset.state = status;
  const text = detail && status !== "connected" ? `${labels[status]} (${detail})` : labels[status];
  setText(part(els.connection, ".connection-label"), text);
  // Removed from the workspace (or logged out elsewhere: the API then answers 401, and we
  // go to the login page).
  if (status === "offline" && detail === NO_ACCESS) lostAccess();
}

// -- workspaces and the stream ------------------------------------------------------------

async function boot() {
  bindEvents();
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
  const stored = Number(localStorage.getItem(WORKSPACE_KEY)) || null;
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

function renderWorkspacePicker() {
  const select = els.workspaceSelect;
  const shown = app.workspaces.some((workspace) => workspace.id === app.workspaceId);
  select.replaceChildren(
    ...(shown ? [] : [h("option", { value: "", disabled: true, selected: true }, "Choose a workspace")]),
    ...app.workspaces.map((workspace) =>
      h("option", { value: workspace.id, selected: workspace.id === app.workspaceId }, workspace.name),
    ),
  );
  select.disabled = app.workspaces.length === 0;
  select.value = shown ? String(app.workspaceId) : "";
}

function openWorkspace(workspaceId) {
  if (app.stream) {
    drafts.flushAll();
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
  localStorage.setItem(WORKSPACE_KEY, String(workspaceId));
  renderWorkspacePicker();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const stream = new WorkbenchStream(`${scheme}://${location.host}/ws/workspaces/${workspaceId}/`, {
    onStatus: renderConnection,
    onChange: (change) => {
      if (change.kind === "snapshot") {
        // Message events missed while disconnected are not in a snapshot: reload transcripts.
        if (!change.first) app.transcripts.clear();
        drafts.reconcileWith(stream.model, workspaceId);
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
 * This page may no longer show the workspace (removed by an owner, or left): say so, drop
 * what it showed, and offer the workspaces still mine (the list is fetched again).
 */
async function lostAccess({ left = false } = {}) {
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
  if (localStorage.getItem(WORKSPACE_KEY) === String(workspaceId)) localStorage.removeItem(WORKSPACE_KEY);
  history.replaceState(null, "", location.pathname + location.search);
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

// -- rendering ----------------------------------------------------------------------------

let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(render);
}

function render() {
  renderQueued = false;
  const stream = app.stream;
  const ready = Boolean(stream && stream.snapshots > 0);
  renderNoAccess();
  show(els.noWorkspace, app.workspaces.length === 0 && !app.noAccess?.loading);
  show(els.taskForm, !app.noAccess);
  els.membersButton.disabled = !ready;
  if (!ready) {
    show(els.noTask, false);
    show(els.taskView, false);
    if (app.noAccess) {
      els.taskList.replaceChildren();
      show(els.taskEmpty, false);
      document.title = "Workbench";
    }
    return;
  }
  if (!stream || !ready) return;
  const model = stream.model;
  normalizeSelection(model);
  app.running = runningTurns(model);
  for (const tabId of app.stopping) if (!app.running.has(tabId)) app.stopping.delete(tabId);
  renderTaskList(model);
  const task = app.taskId ? model.tasks.get(app.taskId) : null;
  show(els.noTask, !task && !app.archivedNotice);
  show(els.taskView, Boolean(task));
  renderArchivedNotice();
  if (task) renderTask(model, task);
  else app.shownTabId = null;
  if (app.closeAsk && !model.tabs.has(app.closeAsk) && els.closeDialog.open) els.closeDialog.close();
  app.knownTabs = new Map(model.tabs);
  syncView(stream);
  if (els.membersDialog.open) renderMembers(model);
  const unread = [...model.tabs.values()].filter((tab) => tab.unread).length;
  document.title = unread ? `(${unread}) Workbench` : "Workbench";
  writeHash();
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

function renderNoAccess() {
  const lost = app.noAccess;
  show(els.noAccess, Boolean(lost));
  if (!lost) return;
  let heading = `You no longer have access to “${lost.name}”`;
  let detail = "An owner removed you from this workspace, so its tasks and tabs are no longer shown.";
  if (lost.left) {
    heading = `You left “${lost.name}”`;
    detail = "Its tasks and tabs are no longer shown here.";
  } else if (!lost.removed) {
    heading = `You have no access to “${lost.name}”`;
    detail = "You are not a member of this workspace (or no longer are).";
  }
  setText(els.noAccessHeading, heading);
  setText(els.noAccessDetail, detail);
  show(els.noAccessLoading, lost.loading);
  const others = lost.loading ? [] : app.workspaces.filter((workspace) => workspace.id !== lost.id);
  show(els.noAccessOthers, others.length > 0);
  reconcile(
    els.noAccessList,
    others,
    (workspace) => workspace.id,
    () => h("li", {}, h("button", { type: "button", class: "workspace-open" })),
    (li, workspace) => {
      const button = /** @type {HTMLButtonElement} */ (li.firstElementChild);
      button.dataset.workspaceId = String(workspace.id);
      setText(button, workspace.name);
    },
  );
}

/** Keep the selection on things that exist: a closed tab gives way to its neighbour. */
function normalizeSelection(model) {
  if (app.archivedNotice) {
    // The notice stands in for the archived task until dismissed or another is picked.
    app.taskId = null;
    app.tabId = null;
    return;
  }
  const selectedTab = app.tabId ? model.tabs.get(app.tabId) : null;
  if (selectedTab) app.taskId = selectedTab.task;
  const awaited = app.taskId !== null && app.taskId === app.loadingLinked;
  const hidden = app.taskId !== null && app.taskId === app.archiveUndo?.taskId;
  if (!app.taskId || hidden || (!model.tasks.has(app.taskId) && !awaited)) {
    app.taskId = visibleTasks(model)[0]?.id ?? null;
  }
  const tabs = app.taskId ? model.tabsOf(app.taskId) : [];
  if (!tabs.some((tab) => tab.id === app.tabId)) {
    const remembered = app.taskId === null ? undefined : app.lastTabOfTask.get(app.taskId);
    const index = app.tabId === null ? -1 : app.stripOrder.indexOf(app.tabId);
    const neighbour = index >= 0 ? (tabs[index] ?? tabs[tabs.length - 1]) : null;
    app.tabId = tabs.some((tab) => tab.id === remembered)
      ? remembered
      : (neighbour ?? tabs[0])?.id ?? null;
  }
  if (app.taskId && app.tabId) app.lastTabOfTask.set(app.taskId, app.tabId);
}

function currentStep(sandbox) {
  if (!sandbox || !sandbox.steps.length) return null;
  const running = sandbox.steps.filter((step) => step.outcome === "running");
  return running.length ? running[running.length - 1] : sandbox.steps[sandbox.steps.length - 1];
}

function stepName(step) {
  return step.name.replaceAll("_", " ");
}

function sandboxSummary(task) {
  const sandbox = task.sandbox;
  if (!sandbox) return "Not started";
  const label = SANDBOX_STATES[sandbox.state] ?? sandbox.state;
  const step = currentStep(sandbox);
  if (sandbox.state === "provisioning" && step) return `${label}: ${stepName(step)}`;
  return label;
}

/**
 * The tabs whose agent turn is running: a prompt of theirs is `sending` (delivered, its
 * reply not finished). Known for the tabs whose messages this page has seen: transcripts it
 * loaded, and every message event since it connected.
 */
function runningTurns(model) {
  const running = new Map();
  for (const [tabId, messages] of model.messages) {
    if (!model.tabs.has(tabId)) continue;
    for (const message of messages.values()) {
      if (message.role === "user" && message.state === "sending") running.set(tabId, message.updated_at);
    }
  }
  return running;
}

/** A spinner and the time since `since`, ticking (tickElapsed). */
function runningBadge(className) {
  return h(
    "span",
    { class: `running ${className}`, hidden: true },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    h("span", { class: "running-label" }, "running "),
    h("span", { class: "elapsed", "aria-hidden": "true" }),
  );
}

function showRunning(badge, since) {
  show(badge, Boolean(since));
  const elapsed = part(badge, ".elapsed");
  if (since && elapsed.dataset.since !== since) {
    elapsed.dataset.since = since;
    setText(elapsed, formatElapsed((Date.now() - Date.parse(since)) / 1000));
  }
}

/** The tasks the list shows: all but one archived a moment ago (still undoable). */
function visibleTasks(model) {
  const hidden = app.archiveUndo?.taskId;
  return model.taskList().filter((task) => task.id !== hidden);
}

function renderTaskList(model) {
  const tasks = visibleTasks(model);
  show(els.taskEmpty, tasks.length === 0);
  reconcile(
    els.taskList,
    tasks,
    (task) => task.id,
    () =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "task-item" },
          h("span", { class: "task-item-title" }),
          h(
            "span",
            { class: "task-item-meta" },
            h("span", { class: "badge sandbox-badge" }),
            h("span", { class: "task-item-tabs" }),
            runningBadge("task-item-running"),
          ),
        ),
      ),
    (li, task) => {
      const button = /** @type {HTMLButtonElement} */ (li.firstElementChild);
      button.dataset.taskId = task.id;
      setAttr(button, "aria-current", task.id === app.taskId ? "true" : null);
      setText(part(button, ".task-item-title"), task.title);
      const badge = part(button, ".sandbox-badge");
      badge.dataset.state = task.sandbox ? task.sandbox.state : "none";
      setText(badge, sandboxSummary(task));
      const open = model.tabsOf(task.id).length;
      setText(part(button, ".task-item-tabs"), open === 1 ? "1 tab" : `${open} tabs`);
      // The task's longest-running turn, if any of its tabs has one.
      const since = model
        .tabsOf(task.id)
        .map((tab) => app.running.get(tab.id))
        .filter(Boolean)
        .sort((a, b) => Date.parse(a) - Date.parse(b))[0];
      showRunning(part(button, ".task-item-running"), since ?? null);
    },
  );
  show(els.taskMore, Boolean(model.next));
  els.taskMore.disabled = app.loadingPage !== null;
  setText(els.taskMore, app.loadingPage !== null ? "Loading more tasks…" : "Show more tasks");
}

/** A task the URL names that is not on the workbench's first page: fetched on its own
 * (with its open tabs), so a link to an old task opens it rather than the newest. */
async function loadLinkedTask(taskId) {
  const stream = app.stream;
  if (!stream) return;
  app.loadingLinked = taskId;
  try {
    const [task, tabs] = await Promise.all([
      api("GET", `/api/tasks/${taskId}/`),
      apiList(`/api/tasks/${taskId}/tabs/`),
    ]);
    if (app.stream === stream && task.workspace === app.workspaceId) {
      stream.model.upsertTask(task);
      for (const tab of tabs) stream.model.upsertTab(tab);
    }
  } catch {
    // Gone, or never in this workspace: the newest task is shown instead.
  } finally {
    if (app.loadingLinked === taskId) app.loadingLinked = null;
    scheduleRender();
  }
}

/** The workbench's next page (the snapshot holds the first): on a click, or once the
 * button scrolls into view. */
async function loadMoreTasks() {
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

function formatDuration(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function renderTask(model, task) {
  setText(els.taskHeading, task.title);
  const source = task.repository
    ? `${task.repository}${task.branch ? ` @ ${task.branch}` : ""}`
    : "New empty repository";
  // The failure itself is said once, in the failed tab's pane.
  setText(els.taskMeta, `${source} · agent ${task.agent} · sandbox: ${sandboxSummary(task)}`);
  renderTabStrip(model, task);
  const tab = app.tabId ? model.tabs.get(app.tabId) : null;
  show(els.noTab, !tab);
  show(els.tabPane, Boolean(tab));
  if (tab) renderTab(model, task, tab);
  else app.shownTabId = null;
}

function renderTabStrip(model, task) {
  const tabs = model.tabsOf(task.id);
  const focusedKey = find(document, "#tab-strip li:focus-within")?.dataset.key;
  reconcile(
    els.tabStrip,
    tabs,
    (tab) => tab.id,
    () =>
      h(
        "li",
        { class: "tab" },
        h(
          "button",
          {
            type: "button",
            class: "tab-select",
            dataset: { action: "select" },
            title: "Double-click (or F2) to rename",
          },
          h("span", { class: "tab-state", "aria-hidden": "true" }),
          h("span", { class: "tab-title" }),
          h("span", { class: "unread-dot", "aria-hidden": "true", hidden: true }),
          runningBadge("tab-running"),
        ),
        h("input", { class: "tab-rename", type: "text", maxlength: 200, autocomplete: "off", hidden: true }),
        h("button", { type: "button", class: "tab-close", dataset: { action: "close" } }, "×"),
      ),
    (li, tab) => {
      const state = TAB_STATES[tab.state] ?? tab.state;
      const active = tab.id === app.tabId;
      const title = app.renames.get(tab.id) ?? tab.title;
      const editing = app.renaming === tab.id;
      li.dataset.state = tab.state;
      li.dataset.tabId = tab.id;
      setAttr(li, "data-active", active ? "true" : null);
      const select = part(li, ".tab-select");
      setAttr(select, "aria-current", active ? "true" : null);
      const since = app.running.get(tab.id);
      showRunning(part(li, ".tab-running"), since ?? null);
      setAttr(
        select,
        "aria-label",
        `${title}, ${state}${since ? ", agent working" : ""}${tab.unread ? ", unread replies" : ""}`,
      );
      setText(part(li, ".tab-title"), title);
      setText(part(li, ".tab-state"), state);
      show(part(li, ".unread-dot"), tab.unread);
      show(select, !editing);
      const rename = part(li, ".tab-rename", HTMLInputElement);
      setAttr(rename, "aria-label", `Rename ${tab.title} (Enter saves, Escape cancels)`);
      show(rename, editing);
      setAttr(select, "tabindex", active ? "0" : "-1");
      const close = part(li, ".tab-close", HTMLButtonElement);
      setAttr(close, "tabindex", active ? "0" : "-1");
      setAttr(close, "aria-label", `Close ${title}`);
      close.disabled = app.closing.has(tab.id);
    },
  );
  // Focus was on a tab that went away: keep it in the strip rather than losing it.
  if (focusedKey && !tabs.some((tab) => tab.id === focusedKey)) {
    const next = find(els.tabStrip, `li[data-key="${app.tabId}"] .tab-select`);
    (next ?? els.newTab).focus();
  }
  // A tab that just became active is scrolled into view (the strip scrolls sideways).
  if (app.stripOrder.length && app.tabId && els.tabStrip.dataset.active !== app.tabId) {
    find(els.tabStrip, `li[data-key="${app.tabId}"]`)?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  els.tabStrip.dataset.active = app.tabId ?? "";
  app.stripOrder = tabs.map((tab) => tab.id);
  // Never disabled: every click opens its own tab; busy only says requests are on their way.
  setAttr(els.newTab, "aria-busy", app.opening > 0 ? "true" : null);
}

function renderTab(model, task, tab) {
  setText(els.tabPaneHeading, tab.title);
  renderTabStatus(model, task, tab);
  renderRepoForm(task, tab);
  renderProvisioning(task, tab);
  renderTranscript(model, tab);
  renderComposer(model, tab);
  renderModel(task, tab);
  if (!app.transcripts.has(tab.id)) loadTranscript(tab.id);
}

// -- provisioning, step by step ---------------------------------------------------------

const STEP_STATUS = {
  succeeded: "done",
  running: "running",
  failed: "failed",
  upcoming: "to come",
  skipped: "skipped (the environment was already there)",
  not_run: "not run",
};
const STEP_ICONS = { succeeded: "✓", failed: "✕", upcoming: "○", skipped: "–", not_run: "○" };

/**
 * The run's steps in order: its plan (every step it will take, those to come included)
 * joined with the steps it recorded (the latest of each name); recorded steps the plan does
 * not name (a run from before plans) follow. A planned step that a finished run never
 * recorded was skipped (a ready sandbox reused its server) or not run (the run failed).
 */
function planRows(sandbox) {
  if (!sandbox) return [];
  const recorded = new Map(sandbox.steps.map((step) => [step.name, step]));
  const plan = Array.isArray(sandbox.plan) ? sandbox.plan : [];
  const named = new Set(plan.map((planned) => planned.name));
  const rows = [
    ...plan.map((planned) => ({ name: planned.name, estimate: planned.estimate_ms, step: recorded.get(planned.name) ?? null })),
    ...sandbox.steps.filter((step) => !named.has(step.name)).map((step) => ({ name: step.name, estimate: null, step })),
  ];
  for (const row of rows) {
    if (row.step) row.status = row.step.outcome;
    else if (sandbox.state === "provisioning") row.status = "upcoming";
    else row.status = sandbox.state === "failed" ? "not_run" : "skipped";
  }
  return rows;
}

/** "~3 s", "~2 min": how long a step usually takes (from earlier runs), rounded. */
function formatEstimate(ms) {
  const seconds = Math.max(1, Math.round(ms / 1000));
  return seconds < 60 ? `~${seconds} s` : `~${Math.round(seconds / 60)} min`;
}

function stepLogOpen(key, row) {
  return app.stepLogs.get(key) ?? row.status === "failed"; // a failure shows what it printed
}

/**
 * The steps panel of the shown tab: open while the tab waits on provisioning (or failed
 * there), folded into one line once the environment is ready. Each step says how it went
 * (its duration), how long it has been running (a live timer) or usually takes, and has its
 * log (what it printed, live), folded unless it failed.
 */
function renderProvisioning(task, tab) {
  const sandbox = task.sandbox;
  // A pending tab on a failed sandbox waits for the next attempt's: the old steps are stale.
  const stale = tab.state === "pending_provision" && sandbox && sandbox.state !== "provisioning";
  const rows = stale ? [] : planRows(sandbox);
  show(els.provisioning, rows.length > 0);
  if (!rows.length) return;
  const phase = tab.state === "pending_provision" || tab.state === "error" ? "open" : "folded";
  const key = `${tab.id}|${sandbox.id}|${phase}`;
  if (app.provisioningKey !== key) {
    app.provisioningKey = key;
    els.provisioning.open = phase === "open";
  }
  const done = rows.filter((row) => row.status === "succeeded").length;
  const total = sandbox.steps.reduce((sum, step) => sum + (step.duration_ms ?? 0), 0);
  let summary = `Provisioning steps: ${done} of ${rows.length} done`;
  if (sandbox.state === "ready") summary = `Environment ready in ${formatDuration(total)} (${rows.length} steps)`;
  else if (sandbox.state === "failed") summary = `Provisioning failed after ${formatDuration(total)}`;
  if (tab.attempt > 1) summary += ` · attempt ${tab.attempt}`;
  setText(els.provisioningSummary, summary);
  reconcile(
    els.taskSteps,
    rows,
    (row) => `${sandbox.id}:${row.name}`,
    (row) => {
      const logId = `step-log-${sandbox.id}-${row.name}`;
      return h(
        "li",
        { class: "step" },
        h(
          "div",
          { class: "step-row" },
          h("span", { class: "step-icon", "aria-hidden": "true" }),
          h("span", { class: "step-name" }),
          h("span", { class: "visually-hidden step-status" }),
          h("span", { class: "step-time" }),
          h("button", { type: "button", class: "step-log-toggle", "aria-expanded": "false", "aria-controls": logId, dataset: { action: "log" } }, "Log"),
        ),
        h("pre", { class: "step-log", id: logId, tabindex: "0", hidden: true }),
      );
    },
    (li, row) => {
      const stepKey = li.dataset.key;
      li.dataset.status = row.status;
      li.dataset.name = row.name;
      setAttr(li, "aria-current", row.status === "running" ? "step" : null);
      const icon = part(li, ".step-icon");
      if (row.status === "running") {
        if (!find(icon, ".spinner")) icon.replaceChildren(h("span", { class: "spinner" }));
      } else setText(icon, STEP_ICONS[row.status] ?? "");
      setText(part(li, ".step-name"), stepName(row));
      setText(part(li, ".step-status"), `: ${STEP_STATUS[row.status] ?? row.status}`);
      renderStepTime(part(li, ".step-time"), row);
      const toggle = part(li, ".step-log-toggle");
      const pre = part(li, ".step-log");
      show(toggle, Boolean(row.step));
      const open = Boolean(row.step) && stepLogOpen(stepKey, row);
      setAttr(toggle, "aria-expanded", open ? "true" : "false");
      setAttr(toggle, "aria-label", `${open ? "Hide" : "Show"} the log of ${stepName(row)}`);
      setText(toggle, open ? "Hide log" : "Log");
      show(pre, open);
      if (open) {
        // Follows the log as it grows, unless the reader scrolled up in it.
        const following = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
        const text = row.step.log || (row.status === "running" ? "(no output yet)" : "(no output)");
        setText(pre, text);
        if (following || pre.dataset.shown !== "true") pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.shown = open ? "true" : "false";
    },
  );
}

/** Done: its duration. Running: a live timer (and the usual time). To come: the usual. */
function renderStepTime(el, row) {
  const usual = row.estimate !== null && row.estimate !== undefined ? `usually ${formatEstimate(row.estimate)}` : "";
  if (row.status === "running") {
    let timer = find(el, ".elapsed");
    if (!timer || timer.dataset.since !== row.step.started_at) {
      timer = h("span", { class: "elapsed step-timer", "aria-live": "off", dataset: { since: row.step.started_at } });
      el.replaceChildren(timer, h("span", { class: "step-usual" }));
      setText(timer, formatElapsed((Date.now() - Date.parse(row.step.started_at)) / 1000));
    }
    setText(part(el, ".step-usual"), usual ? ` · ${usual}` : "");
    return;
  }
  let text = usual;
  if (row.step) text = row.step.duration_ms !== null ? formatDuration(row.step.duration_ms) : "";
  if (el.firstElementChild || el.textContent !== text) el.textContent = text;
}

/** The pane's state block; rebuilt only when what it says changes (it is a live region). */
function renderTabStatus(model, task, tab) {
  const step = tab.state === "pending_provision" ? currentStep(task.sandbox) : null;
  const messages = model.transcript(tab.id).length;
  const planned = task.sandbox?.plan?.length ?? 0;
  const failure = describeFailure(task, tab);
  const key = [
    tab.id, tab.state, tab.error_code, tab.error_message, tab.attempt, step?.name, planned, messages === 0,
    tab.state === "error" ? failure.summary : "", app.errorDetails.has(tab.id), app.editing?.tab === tab.id,
  ].join("|");
  if (key === app.statusKey) return;
  app.statusKey = key;
  els.tabStatus.dataset.state = tab.state;
  const elapsed = () =>
    h("span", { class: "elapsed", "aria-live": "off", dataset: { since: tab.state_changed_at } });
  let content = [];
  if (tab.state === "pending_provision") {
    const provisioning = task.sandbox && task.sandbox.state === "provisioning";
    const waiting = provisioning && step ? stepName(step) : "waiting for a worker";
    const plan = provisioning ? planRows(task.sandbox) : [];
    const index = step ? plan.findIndex((row) => row.name === step.name) : -1;
    const position = index >= 0 ? `Step ${index + 1} of ${plan.length}: ` : "Step: ";
    content = [
      h("p", { class: "status-title" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Preparing environment"),
      h("p", { class: "status-detail" }, position, h("strong", { class: "current-step" }, waiting), " · ", elapsed()),
    ];
  } else if (tab.state === "pending_session_create") {
    content = [
      h("p", { class: "status-title" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Starting session"),
      h("p", { class: "status-detail" }, "The environment is ready; starting the agent · ", elapsed()),
    ];
  } else if (tab.state === "error") {
    const open = app.errorDetails.has(tab.id);
    const editing = app.editing?.tab === tab.id;
    const failedAt = tab.state_changed_at ? new Date(tab.state_changed_at) : null;
    content = [
      h("p", { class: "status-title" }, h("span", { class: "status-icon", "aria-hidden": "true" }, "✕"), failure.summary),
      h(
        "p",
        { class: "status-detail failure-when" },
        `Attempt ${tab.attempt}`,
        failedAt
          ? [" · failed at ", h("time", { datetime: tab.state_changed_at, title: failedAt.toLocaleString() }, failedAt.toLocaleTimeString())]
          : null,
      ),
      failure.hint ? h("p", { class: "status-detail failure-hint" }, failure.hint) : null,
      h(
        "div",
        { class: "status-actions" },
        failure.editable && !editing
          ? h("button", { type: "button", class: "primary", dataset: { action: "edit-repository" } }, "Edit repository & retry")
          : null,
        h("button", { type: "button", class: failure.editable ? "retry" : "primary retry", dataset: { action: "retry" } }, "Retry"),
        failure.raw
          ? h("button", { type: "button", class: "details-toggle", "aria-expanded": String(open), "aria-controls": "error-details", dataset: { action: "details" } }, open ? "Hide details" : "Details")
          : null,
      ),
      failure.raw ? h("pre", { id: "error-details", class: "error-details", hidden: !open }, failure.raw) : null,
    ];
  } else if (tab.state === "ready" && messages === 0) {
    content = [h("p", { class: "status-detail" }, "The agent is ready. Send it a message to start.")];
  }
  els.tabStatus.replaceChildren(...content);
  show(els.tabStatus, content.length > 0);
  tickElapsed();
}

/** A failed tab's cause in plain words (the sandbox's own when provisioning failed), what
 * may fix it, whether another repository may, and the raw text for "Details". */
function describeFailure(task, tab) {
  const sandbox = task.sandbox;
  const provisioning = PROVISIONING_FAILURES.has(tab.error_code);
  const specific = provisioning && sandbox && sandbox.state === "failed" ? SANDBOX_FAILURES[sandbox.error_code] : null;
  const [summary, hint] = specific ??
    TAB_FAILURES[tab.error_code] ?? [tab.error_code ? `This tab failed (${tab.error_code.replaceAll("_", " ")})` : "This tab failed", ""];
  const raw = tab.error_message || (sandbox && sandbox.state === "failed" ? sandbox.error_message : "");
  return { summary, hint, raw, editable: provisioning };
}

/** The repository form of a failed tab: what it says comes from the task once, when opened. */
function renderRepoForm(task, tab) {
  const editing = app.editing;
  if (editing && editing.tab === tab.id && tab.state !== "error" && !editing.busy) app.editing = null; // retried elsewhere
  const shown = Boolean(editing && editing.tab === tab.id && tab.state === "error");
  show(els.repoForm, shown);
  if (!shown || !editing) return;
  setText(els.repoError, editing.error);
  show(els.repoError, Boolean(editing.error));
  for (const button of els.repoForm.querySelectorAll("button")) button.disabled = editing.busy;
}

function startEditRepository(tabId) {
  const tab = app.stream?.model.tabs.get(tabId);
  const task = tab && openModel().tasks.get(tab.task);
  if (!task) return;
  app.editing = { tab: tabId, task: task.id, busy: false, error: "" };
  els.repoRepository.value = task.repository;
  els.repoBranch.value = task.branch;
  render();
  els.repoRepository.focus();
  els.repoRepository.select();
}

function cancelEditRepository() {
  app.editing = null;
  render();
  find(els.tabStatus, "button[data-action=edit-repository]")?.focus();
}

/** Save the task's repository and branch (the next attempt uses them), then retry the tab. */
async function saveRepositoryAndRetry() {
  const editing = app.editing;
  if (!editing || editing.busy) return;
  const stream = app.stream;
  if (!stream) return;
  editing.busy = true;
  editing.error = "";
  render();
  const body = { repository: els.repoRepository.value.trim(), branch: els.repoBranch.value.trim() };
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

function tickElapsed() {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".elapsed[data-since]"))) {
    const since = Date.parse(el.dataset.since ?? "");
    if (!Number.isNaN(since)) setText(el, formatElapsed((Date.now() - since) / 1000));
  }
}

function renderTranscript(model, tab) {
  const list = els.transcript;
  const messages = model.transcript(tab.id);
  const switched = list.dataset.tab !== tab.id;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  list.dataset.tab = tab.id;
  show(list, messages.length > 0);
  const mock = tab.agent === "mock";
  reconcile(
    list,
    messages,
    (message) => `${message.tab}:${message.id}`,
    (message) =>
      h(
        "li",
        { class: `message message-${message.role}` },
        h(
          "p",
          { class: "message-meta" },
          h("span", { class: "message-author" }),
          h("span", { class: "badge mock-badge", title: MOCK_AGENT_NOTE, hidden: true }, "echo only"),
          h("time", { class: "message-time" }),
          h("span", { class: "message-state" }),
        ),
        h("div", { class: "message-text" }),
        h("p", { class: "message-error", hidden: true }),
      ),
    (li, message) => {
      li.dataset.state = message.state;
      const agent = message.role !== "user";
      setText(part(li, ".message-author"), agent ? tab.agent || "Agent" : "You");
      show(part(li, ".mock-badge"), agent && mock);
      const time = part(li, ".message-time", HTMLTimeElement);
      if (time.dateTime !== message.created_at) {
        const at = new Date(message.created_at);
        time.dateTime = message.created_at;
        time.title = at.toLocaleString();
        setText(time, formatMessageTime(at));
      }
      setText(part(li, ".message-state"), MESSAGE_STATES[message.state] ?? "");
      const body = part(li, ".message-text");
      const text = agent ? replyText(tab, message) : message.text;
      const shown = text || (message.state === "streaming" ? "…" : "");
      if (rendered.get(body) !== `${agent}:${shown}`) {
        rendered.set(body, `${agent}:${shown}`);
        // Replies are markdown (sanitized); a prompt is shown as typed.
        if (agent) body.replaceChildren(renderMarkdown(shown));
        else body.textContent = shown;
      }
      const error = message.state === "failed" ? message.error_message : "";
      setText(part(li, ".message-error"), error);
      show(part(li, ".message-error"), Boolean(error));
    },
  );
  if (switched || atBottom) list.scrollTop = list.scrollHeight;
}

const rendered = new WeakMap(); // a message's text element -> what it shows (rendered once)

/** "14:03" today, else "12 Mar, 14:03": when a message was written. */
function formatMessageTime(at) {
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (at.toDateString() === new Date().toDateString()) return time;
  return `${at.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** The mock agent answers with the JSON-RPC request it got (`{"echoed": {...}}`): show the
 * prompt it echoes rather than the envelope. Anything else (or a reply still streaming) as is. */
function replyText(tab, message) {
  const text = message.text || "";
  if (tab.agent !== "mock" || !text.startsWith('{"echoed"')) return text;
  try {
    const prompt = JSON.parse(text)?.echoed?.params?.prompt;
    if (Array.isArray(prompt)) {
      return prompt.filter((part) => part && part.type === "text").map((part) => part.text).join("\n\n");
    }
  } catch {
    // Not whole yet: shown as it comes.
  }
  return text;
}

function renderComposer(model, tab) {
  const input = els.composerInput;
  if (app.shownTabId !== tab.id) {
    if (app.shownTabId) drafts.save(app.shownTabId);
    app.shownTabId = tab.id;
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
}

// -- the tab's model ----------------------------------------------------------------------

/** The models the task's sandbox offers; known once it is ready (before: free text). */
function modelChoices(task) {
  const sandbox = task.sandbox;
  const known = sandbox && sandbox.state === "ready" && Array.isArray(sandbox.models);
  return {
    models: known ? sandbox.models : [],
    defaultModel: (sandbox && sandbox.default_model) || "",
  };
}

/**
 * @param {string} value
 * @param {{models: ModelChoice[], defaultModel?: string}} choices
 * @returns {string}
 */
function modelName(value, { models, defaultModel }) {
  if (!value) return defaultModel ? `default (${modelName(defaultModel, { models })})` : "default";
  return models.find((choice) => choice.value === value)?.name || value;
}

function renderModel(task, tab) {
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

async function setModel(tabId, value) {
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

// -- members ------------------------------------------------------------------------------

function myMembership(model) {
  return model.members.get(model.me) ?? null;
}

function openMembers() {
  if (!app.stream || app.stream.snapshots === 0 || els.membersDialog.open) return;
  app.members = { error: "", status: "", busy: new Set() };
  show(els.memberLeaveConfirm, false);
  els.memberAdd.reset();
  renderMembers(app.stream.model);
  els.membersDialog.showModal();
  // Owners came to add someone, most likely; everyone else to read the list.
  const owner = myMembership(app.stream.model)?.role === "owner";
  (owner ? els.memberAddWho : part(els.membersDialog, ".dialog-close")).focus();
}

function closeMembers({ restoreFocus = true } = {}) {
  if (!els.membersDialog.open) return;
  els.membersDialog.close();
  if (restoreFocus) els.membersButton.focus();
}

function membersMessage({ error = "", status = "" }) {
  app.members.error = error;
  app.members.status = status;
}

function renderMembers(model) {
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
      li.dataset.user = member.user;
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

async function addMember() {
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

async function changeRole(userId, role) {
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

async function removeMember(userId) {
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

function askToLeave(asking) {
  show(els.memberLeaveConfirm, asking);
  show(els.memberLeave, !asking);
  (asking ? els.memberLeaveNo : els.memberLeave).focus();
}

async function leaveWorkspace() {
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

// -- actions ------------------------------------------------------------------------------

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function loadTranscript(tabId) {
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

// What the mock agent is, wherever it is named: it answers without any model.
const MOCK_AGENT_NOTE = "The mock agent echoes what you send it: no model runs. Choose another agent for real work.";

/** The agents a task may run (GET /api/agents/), for the new-task form's choice. */
async function loadAgents() {
  try {
    app.agents = await api("GET", "/api/agents/");
  } catch {
    app.agents = null; // the form keeps offering the default agent
  }
  renderAgentChoice();
}

function renderAgentChoice() {
  const select = els.taskAgent;
  if (app.agents && app.agents.length && select.dataset.loaded !== "true") {
    const chosen = select.value || "mock";
    select.replaceChildren(
      ...app.agents.map((agent) =>
        h("option", { value: agent.name }, agent.name),
      ),
    );
    select.value = app.agents.some((agent) => agent.name === chosen) ? chosen : app.agents[0].name;
    select.dataset.loaded = "true";
  }
  setText(els.taskAgentNote, select.value === "mock" ? MOCK_AGENT_NOTE : "");
}

/**
 * Create a task. With a prompt, the server also opens its first tab and queues the prompt
 * there (`first_tab`, `first_message`): that tab is shown at once, the prompt waiting in it
 * until the agent is ready. A title left empty is the prompt's first line.
 */
async function createTask(form) {
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  const prompt = (data.prompt || "").trim();
  let title = (data.title || "").trim();
  if (!title && prompt) {
    const line = prompt.split("\n")[0].trim();
    title = line.length > 80 ? `${line.slice(0, 79)}…` : line;
  }
  if (!title) {
    setText(els.taskFormHint, "Give the task a title, or say what the agent should work on.");
    show(els.taskFormHint, true);
    els.taskTitle.focus();
    return;
  }
  show(els.taskFormHint, false);
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
    const agent = els.taskAgent.value;
    form.reset();
    els.taskAgent.value = agent; // the next task likely runs the same agent
    part(form, "details", HTMLDetailsElement).open = false;
    renderAgentChoice();
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
    setText(els.taskFormHint, `Could not create the task: ${fields.length ? fields.join("; ") : error.message}`);
    show(els.taskFormHint, true);
  } finally {
    button.disabled = false;
  }
}

async function createWorkspace(form) {
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

/**
 * Open one tab on the shown task: one request per click (or shortcut), never blocked by
 * another still on its way. Its Idempotency-Key is made once, here, and sent again by the
 * retries of this request only, so a retry whose first try did reach the server gets the
 * same tab back rather than a second one. The newest click's tab is shown, with the focus
 * in its composer, whatever order the answers come in.
 */
async function openTab() {
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

async function closeTab(tabId) {
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

async function retryTab(tabId) {
  try {
    openModel().upsertTab(await api("POST", `/api/tabs/${tabId}/retry/`));
  } catch (caught) {
    const error = asApiError(caught);
    notify(`Could not retry: ${error.message}`);
  }
  scheduleRender();
}

/**
 * Send the composer's prompt to the shown tab, whatever its state: a pending or failed tab
 * queues it (202) until it is ready. The text leaves the composer only once the server has
 * it; a refusal keeps it there, with the reason under it.
 */
async function send() {
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
    drafts.edit(tab.id, app.shownTabId === tab.id ? els.composerInput.value : "");
    drafts.save(tab.id);
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

/** Ask the agent to stop the tab's running turn; the session stays. */
async function stopTurn(tabId) {
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

// -- nothing typed is lost: closing asks, archiving waits behind an Undo -------------------

/** What the user has typed in the tab and not sent: the composer's text when it is shown. */
function draftText(tab) {
  return tab.id === app.shownTabId ? els.composerInput.value : drafts.text(tab);
}

/** Prompts of the tab waiting for its agent (queued): closing the tab fails them. */
function queuedCount(model, tabId) {
  return model.transcript(tabId).filter((message) => message.role === "user" && message.state === "queued").length;
}

/** Close at once, unless the tab holds a draft or queued prompts: then ask, in the page. */
function askToClose(tabId) {
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
  const title = app.renames.get(tabId) ?? tab.title;
  setText(els.closeHeading, `Close “${title}”?`);
  const lost = [];
  if (draft.trim()) lost.push("its draft is discarded");
  if (queued) lost.push(`${queued === 1 ? "1 prompt" : `${queued} prompts`} waiting for the agent will not be sent`);
  setText(els.closeDetail, `Closing it cannot be undone: ${lost.join(", and ")}.`);
  setText(els.closeDraft, draft);
  show(els.closeDraft, Boolean(draft.trim()));
  els.closeDialog.showModal(); // the focus goes to "Keep tab"; Escape keeps it too
}

/**
 * Archive the task: hidden from the list at once, the next task shown, and an Undo offered;
 * the request is sent only once the Undo is gone (UNDO_MS, or sooner if another archive,
 * another workspace or leaving the page needs it sent).
 */
function archiveTask(taskId) {
  const model = app.stream?.model;
  const task = model?.tasks.get(taskId);
  if (!model || !task) return;
  commitArchive(); // one Undo at a time: an earlier archive is sent now
  const typed = model.tabsOf(taskId).filter((tab) => draftText(tab).trim()).length;
  if (app.shownTabId) drafts.save(app.shownTabId);
  app.archiveUndo = { taskId, title: task.title, tabId: app.tabId, timer: null, deadline: 0, remaining: UNDO_MS };
  app.taskId = null;
  app.tabId = null;
  render();
  const kept = typed ? ` Its ${typed === 1 ? "draft goes" : `${typed} drafts go`} with it.` : "";
  setText(els.toastText, `Archived “${task.title}”.${kept}`);
  show(els.toast, true);
  resumeUndo();
  // The Archive button now stands for the next task: the focus goes to the Undo instead.
  els.toastUndo.focus();
}

function pauseUndo() {
  const pending = app.archiveUndo;
  if (!pending || pending.timer === null) return;
  clearTimeout(pending.timer ?? undefined);
  pending.timer = null;
  pending.remaining = Math.max(0, pending.deadline - Date.now());
}

function resumeUndo() {
  const pending = app.archiveUndo;
  if (!pending || pending.timer !== null) return;
  pending.deadline = Date.now() + pending.remaining;
  pending.timer = setTimeout(() => commitArchive(), pending.remaining);
}

function undoArchive() {
  const pending = app.archiveUndo;
  if (!pending) return;
  clearTimeout(pending.timer ?? undefined);
  app.archiveUndo = null;
  show(els.toast, false);
  select(pending.taskId, pending.tabId);
  els.taskArchive.focus();
}

/** Send the archive waiting behind its Undo, if any. */
async function commitArchive({ keepalive = false } = {}) {
  const pending = app.archiveUndo;
  if (!pending) return;
  clearTimeout(pending.timer ?? undefined);
  app.archiveUndo = null;
  const hadFocus = els.toast.contains(document.activeElement);
  show(els.toast, false);
  if (hadFocus) els.main.focus();
  app.archivingHere.add(pending.taskId);
  const stream = app.stream;
  try {
    const task = await api("POST", `/api/tasks/${pending.taskId}/archive/`, {}, { keepalive });
    if (stream && stream === app.stream) stream.model.upsertTask(task);
  } catch (caught) {
    const error = asApiError(caught);
    app.archivingHere.delete(pending.taskId);
    if (error.status !== 404 && stream === app.stream) {
      notify(`Could not archive “${pending.title}”: ${error.message}`); // it is listed again
    }
  }
  scheduleRender();
}

/**
 * The shown task was archived elsewhere (another page, member or REST client): rather than
 * jumping to another task, say so, with every draft of its tabs to copy.
 */
function archivedElsewhere(task) {
  if (task.id !== app.taskId || app.archivingHere.has(task.id)) return;
  const tabs = [...app.knownTabs.values()]
    .filter((tab) => tab.task === task.id)
    .sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  const typed = tabs
    .map((tab) => ({ tabId: tab.id, title: app.renames.get(tab.id) ?? tab.title, text: draftText(tab) }))
    .filter((draft) => draft.text.trim());
  const hadFocus = els.taskView.contains(document.activeElement) || document.activeElement === document.body;
  if (els.closeDialog.open) els.closeDialog.close();
  app.archivedNotice = { taskId: task.id, title: task.title, drafts: typed, copied: null };
  app.taskId = null;
  app.tabId = null;
  render();
  if (hadFocus) els.taskArchivedHeading.focus();
}

function renderArchivedNotice() {
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

async function copyDraft(tabId) {
  const notice = app.archivedNotice;
  const draft = notice?.drafts.find((item) => item.tabId === tabId);
  if (!notice || !draft) return;
  const area = find(els.taskArchivedDrafts, `li[data-key="${tabId}"] textarea`, HTMLTextAreaElement);
  try {
    await navigator.clipboard.writeText(draft.text);
    notice.copied = tabId;
  } catch {
    // No clipboard access: the text is selected, for Ctrl+C.
    area?.focus();
    area?.select();
    notice.copied = null;
    const status = find(els.taskArchivedDrafts, `li[data-key="${tabId}"] .copy-status`);
    if (status) setText(status, "Selected: press Ctrl+C to copy");
    return;
  }
  render();
}

function dismissArchived() {
  app.archivedNotice = null;
  render();
  els.main.focus();
}

// -- renaming a tab, in place ---------------------------------------------------------------

function startRename(tabId) {
  const tab = app.stream?.model.tabs.get(tabId);
  if (!tab) return;
  app.renaming = tabId;
  render();
  const input = find(els.tabStrip, `li[data-key="${tabId}"] .tab-rename`, HTMLInputElement);
  if (!input) return;
  input.value = app.renames.get(tabId) ?? tab.title;
  input.focus();
  input.select();
}

/** Leave the title field: keep what was typed (Enter, or focus moving away) or not (Escape). */
function endRename(tabId, { save, refocus }) {
  if (app.renaming !== tabId) return; // already ended (Enter, then the blur it causes)
  const input = find(els.tabStrip, `li[data-key="${tabId}"] .tab-rename`, HTMLInputElement);
  const title = (input?.value ?? "").trim();
  app.renaming = null;
  render();
  if (refocus) find(els.tabStrip, `li[data-key="${tabId}"] .tab-select`)?.focus();
  const tab = app.stream?.model.tabs.get(tabId);
  if (save && tab && title && title !== tab.title) renameTab(tabId, title);
}

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

function select(taskId, tabId) {
  if (app.shownTabId && app.shownTabId !== tabId) drafts.save(app.shownTabId);
  if (taskId) app.archivedNotice = null;
  app.taskId = taskId;
  app.tabId = tabId;
  render();
}

// -- narrow windows: the task list as a drawer ----------------------------------------------

const NARROW = window.matchMedia("(max-width: 760px)");

/** Open or close the drawer (narrow windows only); the focus goes in, or back out. */
function setDrawer(open, { focus = true } = {}) {
  const opened = open && NARROW.matches;
  document.body.dataset.drawer = opened ? "open" : "closed";
  setAttr(els.drawerToggle, "aria-expanded", opened ? "true" : "false");
  show(els.drawerBackdrop, opened);
  if (!focus) return;
  if (opened) (find(els.taskList, '[aria-current="true"]') ?? els.taskTitle).focus();
  else if (els.sidebar.contains(document.activeElement)) els.drawerToggle.focus();
}

/** Left/Right (Home/End) move between the tabs of the strip, selecting them; only the
 * shown tab is in the Tab order (a roving tabindex), so Tab leaves the strip at once. */
function moveInStrip(event) {
  const keys = { ArrowLeft: -1, ArrowRight: 1, Home: "first", End: "last" };
  const step = keys[event.key];
  if (step === undefined || !targetMatches(event, ".tab-select")) return false;
  const items = [...els.tabStrip.querySelectorAll("li")];
  const index = items.findIndex((item) => item === closestTarget(event, "li"));
  let next = step === "first" ? 0 : step === "last" ? items.length - 1 : index + step;
  next = Math.max(0, Math.min(items.length - 1, next));
  event.preventDefault();
  const tabId = items[next]?.dataset.key;
  if (!tabId) return true;
  select(app.taskId, tabId);
  find(els.tabStrip, `li[data-key="${tabId}"] .tab-select`)?.focus();
  return true;
}

// -- events -------------------------------------------------------------------------------

function bindEvents() {
  els.workspaceSelect.addEventListener("change", () => {
    app.taskId = null;
    app.tabId = null;
    openWorkspace(Number(els.workspaceSelect.value));
  });
  els.taskForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createTask(els.taskForm);
  });
  els.taskPrompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      createTask(els.taskForm);
    }
  });
  els.taskAgent.addEventListener("change", renderAgentChoice);
  els.drawerToggle.addEventListener("click", () => setDrawer(document.body.dataset.drawer !== "open"));
  els.drawerBackdrop.addEventListener("click", () => setDrawer(false));
  els.sidebar.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.dataset.drawer === "open") setDrawer(false);
  });
  NARROW.addEventListener("change", () => setDrawer(false, { focus: false }));
  els.workspaceForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createWorkspace(els.workspaceForm);
  });
  els.taskMore.addEventListener("click", () => loadMoreTasks());
  // Scrolling to the end of the list loads the next page, as a click would.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMoreTasks();
  }).observe(els.taskMore);
  els.taskList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-task-id]");
    if (!button) return;
    const taskId = Number(button.dataset.taskId);
    select(taskId, app.lastTabOfTask.get(taskId) ?? null);
    if (document.body.dataset.drawer === "open") {
      setDrawer(false, { focus: false });
      els.main.focus();
    }
  });
  els.tabStrip.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-action]");
    const tabId = button?.closest("li")?.dataset.key;
    if (!tabId) return;
    if (button.dataset.action === "close") askToClose(tabId);
    else select(app.taskId, tabId);
  });
  els.tabStrip.addEventListener("dblclick", (event) => {
    const tabId = closestTarget(event, ".tab-select")?.closest("li")?.dataset.key;
    if (tabId) startRename(tabId);
  });
  els.tabStrip.addEventListener("keydown", (event) => {
    const tabId = closestTarget(event, "li")?.dataset.key;
    if (!tabId) return;
    if (moveInStrip(event)) return;
    if (targetMatches(event, ".tab-select") && event.key === "F2") {
      event.preventDefault();
      startRename(tabId);
    } else if (targetMatches(event, ".tab-rename") && (event.key === "Enter" || event.key === "Escape")) {
      event.preventDefault();
      event.stopPropagation();
      endRename(tabId, { save: event.key === "Enter", refocus: true });
    }
  });
  els.tabStrip.addEventListener("focusout", (event) => {
    if (!targetMatches(event, ".tab-rename")) return;
    const tabId = closestTarget(event, "li")?.dataset.key;
    if (tabId) endRename(tabId, { save: true, refocus: false });
  });
  els.newTab.addEventListener("click", openTab);
  els.turnStop.addEventListener("click", () => {
    if (app.shownTabId) stopTurn(app.shownTabId);
  });
  // Alt+N anywhere on the page (the composer included) opens a tab, as the button does;
  // a held key opens one, not one per repeat.
  document.addEventListener("keydown", (event) => {
    if (event.code !== "KeyN" || !event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (els.membersDialog.open || els.closeDialog.open || els.taskView.hidden || !app.taskId) return;
    event.preventDefault();
    if (!event.repeat) openTab();
  });
  els.taskSteps.addEventListener("click", (event) => {
    const li = closestTarget(event, "button[data-action=log]")?.closest("li");
    if (!li) return;
    const open = part(li, ".step-log-toggle").getAttribute("aria-expanded") === "true";
    app.stepLogs.set(li.dataset.key ?? "", !open);
    render();
  });
  els.tabStatus.addEventListener("click", (event) => {
    const action = closestTarget(event, "button[data-action]")?.dataset.action;
    if (!action || !app.tabId) return;
    if (action === "retry") retryTab(app.tabId);
    else if (action === "edit-repository") startEditRepository(app.tabId);
    else if (action === "details") {
      if (app.errorDetails.has(app.tabId)) app.errorDetails.delete(app.tabId);
      else app.errorDetails.add(app.tabId);
      render();
      find(els.tabStatus, "button[data-action=details]")?.focus();
    }
  });
  els.repoForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveRepositoryAndRetry();
  });
  els.repoCancel.addEventListener("click", cancelEditRepository);
  els.repoForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancelEditRepository();
  });
  els.composerInput.addEventListener("input", () => {
    if (app.shownTabId) drafts.edit(app.shownTabId, els.composerInput.value);
  });
  els.composerInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  els.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  els.modelSelect.addEventListener("change", () => {
    if (app.shownTabId) setModel(app.shownTabId, els.modelSelect.value);
  });
  els.modelForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (app.shownTabId) setModel(app.shownTabId, els.modelInput.value.trim());
  });
  els.membersButton.addEventListener("click", openMembers);
  part(els.membersDialog, ".dialog-close").addEventListener("click", () => closeMembers());
  // Escape (the dialog's own "cancel") and every other way of closing: focus goes back.
  els.membersDialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    closeMembers();
  });
  els.membersDialog.addEventListener("click", (event) => {
    if (event.target === els.membersDialog) closeMembers(); // the backdrop
  });
  els.memberAdd.addEventListener("submit", (event) => {
    event.preventDefault();
    addMember();
  });
  els.memberList.addEventListener("change", (event) => {
    const select = closestTarget(event, "select[data-action=role]");
    const userId = Number(select?.closest("li")?.dataset.key);
    if (userId && select instanceof HTMLSelectElement) changeRole(userId, select.value);
  });
  els.memberList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-action=remove]");
    const userId = Number(button?.closest("li")?.dataset.key);
    if (userId) removeMember(userId);
  });
  els.memberLeave.addEventListener("click", () => askToLeave(true));
  els.memberLeaveNo.addEventListener("click", () => askToLeave(false));
  els.memberLeaveYes.addEventListener("click", leaveWorkspace);
  els.noAccessList.addEventListener("click", (event) => {
    const button = closestTarget(event, "button[data-workspace-id]");
    if (!button) return;
    app.taskId = null;
    app.tabId = null;
    openWorkspace(Number(button.dataset.workspaceId));
  });
  part(els.notice, ".notice-dismiss").addEventListener("click", () => show(els.notice, false));
  els.taskArchive.addEventListener("click", (event) => {
    // The second click of a double click would archive the next task shown: ignored.
    if (event.detail > 1 || !app.taskId) return;
    archiveTask(app.taskId);
  });
  els.toastUndo.addEventListener("click", undoArchive);
  // The Undo waits while it is pointed at (the focus is put on it, so that cannot pause it).
  els.toast.addEventListener("mouseenter", pauseUndo);
  els.toast.addEventListener("mouseleave", resumeUndo);
  els.taskArchivedDismiss.addEventListener("click", dismissArchived);
  els.taskArchivedDrafts.addEventListener("click", (event) => {
    const tabId = closestTarget(event, "button[data-action=copy]")?.closest("li")?.dataset.key;
    if (tabId) copyDraft(tabId);
  });
  els.closeYes.addEventListener("click", () => {
    const tabId = app.closeAsk;
    els.closeDialog.close();
    if (tabId) closeTab(tabId);
  });
  els.closeNo.addEventListener("click", () => els.closeDialog.close());
  els.closeDialog.addEventListener("close", () => {
    app.closeAsk = null;
  });
  window.addEventListener("hashchange", () => {
    const wanted = readHash();
    if (wanted.workspace && wanted.workspace !== app.workspaceId) {
      app.taskId = wanted.task;
      app.tabId = wanted.tab;
      openWorkspace(wanted.workspace);
    } else {
      select(wanted.task, wanted.tab);
    }
  });
  // Leaving the page: send what is still waiting for its debounce (keepalive outlives us).
  // An archive still waiting for its Undo is sent now: it was asked for.
  window.addEventListener("pagehide", () => {
    drafts.flushAll({ keepalive: true });
    commitArchive({ keepalive: true });
  });
  document.addEventListener("visibilitychange", scheduleRender);
  setInterval(tickElapsed, 1000);
}

boot().catch((error) => {
  console.error(error);
  if (error && error.status === 401) loginAgain();
});
