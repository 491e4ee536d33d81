// @ts-check
// The page's state, below everything else: the constants, the AppState typedef and the
// `app` object (everything the page holds besides the workspace's model, which is the
// stream's), the drafts kept in local storage, the stored workspace, the URL fragment
// (#workspace=1&task=2&tab=<uuid>, so a refresh restores the same view), and the pure
// derivations from the model the views and effects share (the selection kept on things
// that exist, the running turns, the provisioning plan, a failure in plain words, the
// model choices). No DOM writes, no requests. Imports nothing at run time (types only).

const WORKSPACE_KEY = "workbench.workspace";
const DRAFTS_KEY = "workbench.drafts";
export const DRAFT_SAVE_DELAY_MS = 600;
// How long an archive waits behind its Undo before it is sent.
export const UNDO_MS = 5000;
// Opens a new tab on the shown task, wherever the focus is (Alt+N: Chromium and Firefox
// bind nothing to it; Alt+T is Firefox's Tools menu, Ctrl+Alt+N is AltGr+N, a letter, on
// some layouts). Said in the button's title and the composer's hint.
export const NEW_TAB_SHORTCUT = "Alt+N";

export const TAB_STATES = {
  pending_provision: "preparing",
  pending_session_create: "starting",
  ready: "ready",
  error: "error",
};
// What sending does while the tab is not ready: the server queues the prompt (202) and
// delivers it, in order, once the tab's session is ready.
export const QUEUED_UNTIL_READY = {
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

export const MESSAGE_STATES = {
  queued: "Waiting for the agent…",
  sending: "sending…",
  streaming: "replying…",
  failed: "failed",
};

export const STEP_STATUS = {
  succeeded: "done",
  running: "running",
  failed: "failed",
  upcoming: "to come",
  skipped: "skipped (the environment was already there)",
  not_run: "not run",
};
export const STEP_ICONS = { succeeded: "✓", failed: "✕", upcoming: "○", skipped: "–", not_run: "○" };

// What the mock agent is, wherever it is named: it answers without any model.
export const MOCK_AGENT_NOTE = "The mock agent echoes what you send it: no model runs. Choose another agent for real work.";


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
 * @property {import("./stream.js").WorkbenchStream | null} stream
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

/**
 * What a render found the page needs, for the effects to act on (views never request):
 * the draft of the tab the composer just left, to save; a transcript not loaded yet.
 * @typedef {object} Wants
 * @property {string | null} saveDraft
 * @property {string | null} transcript
 */

/** @type {AppState} */
export const app = {
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
  shownTabId: null, // the tab the page shows, whose draft the composer holds (settle())
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
// (effects/drafts.js saves them; this is the local copy and its save timers)

export const drafts = {
  local: readJSON(DRAFTS_KEY, {}), // tab id -> {text, workspace}: typed, not yet saved
  timers: new Map(),
  saving: new Map(), // tab id -> the text whose save is on its way (sent once, not twice)

  has(tabId) {
    return Object.hasOwn(this.local, tabId);
  },

  text(tab) {
    return this.has(tab.id) ? this.local[tab.id].text : tab.draft;
  },

  /** Keep what was typed in the tab, locally (the save follows, debounced). */
  keep(tabId, text) {
    this.local[tabId] = { text, workspace: app.workspaceId };
    this.persist();
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
export function openModel() {
  if (!app.stream) throw new Error("No workspace is open");
  return app.stream.model;
}

// -- the workspace last opened on this browser --------------------------------------------

export function storedWorkspace() {
  return Number(localStorage.getItem(WORKSPACE_KEY)) || null;
}

/** @param {number} workspaceId */
export function storeWorkspace(workspaceId) {
  localStorage.setItem(WORKSPACE_KEY, String(workspaceId));
}

/** @param {number} workspaceId */
export function forgetStoredWorkspace(workspaceId) {
  if (localStorage.getItem(WORKSPACE_KEY) === String(workspaceId)) localStorage.removeItem(WORKSPACE_KEY);
}

// -- the URL fragment ---------------------------------------------------------------------

export function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return {
    workspace: Number(params.get("workspace")) || null,
    task: Number(params.get("task")) || null,
    tab: params.get("tab") || null,
  };
}

export function writeHash() {
  const params = new URLSearchParams();
  if (app.workspaceId) params.set("workspace", String(app.workspaceId));
  if (app.taskId) params.set("task", String(app.taskId));
  if (app.tabId) params.set("tab", app.tabId);
  const hash = `#${params}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

/** No fragment at all (the workspace it named is no longer mine). */
export function clearHash() {
  history.replaceState(null, "", location.pathname + location.search);
}

// -- derivations from the model ----------------------------------------------------------

/**
 * Before a render: the selection kept on things that exist, the tab the page shows (whose
 * draft the composer holds), the running turns (and the Stops they ended), a repository
 * form whose tab was retried elsewhere closed, the open tabs remembered (their drafts
 * outlive an archive elsewhere).
 * @param {WorkbenchModel} model
 */
export function settle(model) {
  normalizeSelection(model);
  app.running = runningTurns(model);
  for (const tabId of app.stopping) if (!app.running.has(tabId)) app.stopping.delete(tabId);
  const task = app.taskId ? model.tasks.get(app.taskId) : null;
  const tab = task && app.tabId ? model.tabs.get(app.tabId) : null;
  app.shownTabId = tab ? tab.id : null;
  const editing = app.editing;
  if (tab && editing && editing.tab === tab.id && tab.state !== "error" && !editing.busy) app.editing = null;
  app.knownTabs = new Map(model.tabs);
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

/** The tasks the list shows: all but one archived a moment ago (still undoable). */
export function visibleTasks(model) {
  const hidden = app.archiveUndo?.taskId;
  return model.taskList().filter((task) => task.id !== hidden);
}

/**
 * The tabs whose agent turn is running, each with when it started: the tab's own
 * `running_since` (in the snapshot and every tab.updated, so a page opened mid-turn knows
 * it), else a prompt of its that this page saw `sending` (delivered, its reply not
 * finished: transcripts it loaded, and every message event since it connected).
 * @param {WorkbenchModel} model
 */
function runningTurns(model) {
  /** @type {Map<string, string>} */
  const running = new Map();
  for (const [tabId, tab] of model.tabs) {
    if (tab.running_since) running.set(tabId, tab.running_since);
  }
  for (const [tabId, messages] of model.messages) {
    if (!model.tabs.has(tabId) || running.has(tabId)) continue;
    for (const message of messages.values()) {
      if (message.role === "user" && message.state === "sending") running.set(tabId, message.updated_at);
    }
  }
  return running;
}

export function currentStep(sandbox) {
  if (!sandbox || !sandbox.steps.length) return null;
  const running = sandbox.steps.filter((step) => step.outcome === "running");
  return running.length ? running[running.length - 1] : sandbox.steps[sandbox.steps.length - 1];
}

export function stepName(step) {
  return step.name.replaceAll("_", " ");
}

export function sandboxSummary(task) {
  const sandbox = task.sandbox;
  if (!sandbox) return "Not started";
  const label = SANDBOX_STATES[sandbox.state] ?? sandbox.state;
  const step = currentStep(sandbox);
  if (sandbox.state === "provisioning" && step) return `${label}: ${stepName(step)}`;
  return label;
}

/**
 * The run's steps in order: its plan (every step it will take, those to come included)
 * joined with the steps it recorded (the latest of each name); recorded steps the plan does
 * not name (a run from before plans) follow. A planned step that a finished run never
 * recorded was skipped (a ready sandbox reused its server) or not run (the run failed).
 */
export function planRows(sandbox) {
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

export function stepLogOpen(key, row) {
  return app.stepLogs.get(key) ?? row.status === "failed"; // a failure shows what it printed
}

/** A failed tab's cause in plain words (the sandbox's own when provisioning failed), what
 * may fix it, whether another repository may, and the raw text for "Details". */
export function describeFailure(task, tab) {
  const sandbox = task.sandbox;
  const provisioning = PROVISIONING_FAILURES.has(tab.error_code);
  const specific = provisioning && sandbox && sandbox.state === "failed" ? SANDBOX_FAILURES[sandbox.error_code] : null;
  const [summary, hint] = specific ??
    TAB_FAILURES[tab.error_code] ?? [tab.error_code ? `This tab failed (${tab.error_code.replaceAll("_", " ")})` : "This tab failed", ""];
  const raw = tab.error_message || (sandbox && sandbox.state === "failed" ? sandbox.error_message : "");
  return { summary, hint, raw, editable: provisioning };
}

/** The models the task's sandbox offers; known once it is ready (before: free text). */
export function modelChoices(task) {
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
export function modelName(value, { models, defaultModel }) {
  if (!value) return defaultModel ? `default (${modelName(defaultModel, { models })})` : "default";
  return models.find((choice) => choice.value === value)?.name || value;
}

export function myMembership(model) {
  return model.members.get(model.me) ?? null;
}

export function membersMessage({ error = "", status = "" }) {
  app.members.error = error;
  app.members.status = status;
}

/** Prompts of the tab waiting for its agent (queued): closing the tab fails them. */
export function queuedCount(model, tabId) {
  return model.transcript(tabId).filter((message) => message.role === "user" && message.state === "queued").length;
}
