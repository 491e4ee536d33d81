// @ts-check
// The client-side copy of one workspace's workbench: a snapshot plus events, applied by
// `seq` and by each object's `version` (docs/websocket.md, "Applying events"). It mirrors
// workbench_client.WorkbenchModel, plus transcripts, which the snapshot does not carry.

/** @typedef {import("./types/workbench").Task} Task */
/** @typedef {import("./types/workbench").Tab} Tab */
/** @typedef {import("./types/workbench").TabData} TabData */
/** @typedef {import("./types/workbench").Message} Message */
/** @typedef {import("./types/workbench").Member} Member */
/** @typedef {import("./types/workbench").Sandbox} Sandbox */
/** @typedef {import("./types/workbench").Workspace} Workspace */

/** Put `data` under `key` unless the copy held is newer (a snapshot taken after the event). */
/** Timestamps compare as instants (DRF drops a zero fraction, so the strings do not sort).
 * @param {string | null | undefined} value */
const instant = (value) => (value ? Date.parse(value) : 0);

/**
 * @template K
 * @template {{version?: number}} V
 * @param {Map<K, V>} items
 * @param {K} key
 * @param {V} data
 */
function upsert(items, key, data, { drop = false } = {}) {
  const current = items.get(key);
  if (current && (current.version ?? 0) > (data.version ?? 0)) return false;
  if (drop) items.delete(key);
  else items.set(key, data);
  return true;
}

export class WorkbenchModel {
  constructor() {
    this.seq = -1;
    /** @type {number | null} the user this page belongs to: `unread` and `draft` are theirs */
    this.me = null;
    /** @type {Workspace | null} */
    this.workspace = null;
    /** @type {Map<number, Member>} user id -> member */
    this.members = new Map();
    /** @type {Map<number, Task>} id -> task (with its current sandbox and that sandbox's steps) */
    this.tasks = new Map();
    /** @type {Map<string, Tab>} id -> tab; only open ones */
    this.tabs = new Map();
    /** @type {Map<string, Map<number, Message>>} tab id -> (message id -> message) */
    this.messages = new Map();
    // Closing is terminal, so a closed tab id never comes back: an older event (or a REST
    // answer) arriving after we learned of the close must not resurrect it.
    /** @type {Set<string>} */
    this.closedTabs = new Set();
    // The REST path of the workbench's next page (the snapshot is its first), null once
    // every page is loaded; pages load as the user scrolls to the end of the task list.
    /** @type {string | null} */
    this.next = null;
  }

  /** @param {import("./types/workbench").Snapshot} frame */
  loadSnapshot(frame) {
    this.seq = frame.seq;
    this.me = frame.me;
    this.workspace = frame.workspace;
    this.members = new Map(frame.members.map((member) => [member.user, member]));
    this.tasks = new Map(frame.tasks.map((task) => [task.id, task]));
    this.tabs = new Map(frame.tabs.filter((tab) => !this.closedTabs.has(tab.id)).map((tab) => [tab.id, tab]));
    this.next = frame.next ?? null;
    for (const tabId of this.messages.keys()) {
      if (!this.tabs.has(tabId)) this.messages.delete(tabId);
    }
  }

  /** A later page of the workbench (`GET` of `next`): read after the events applied so
   * far, so each object is kept by `version` like an event's. Returns whether it applied
   * (a page of a workbench since replaced by a fresh snapshot does not).
   * @param {string} path
   * @param {import("./types/workbench").WorkbenchPage} page */
  loadPage(path, page) {
    if (path !== this.next) return false;
    for (const task of page.tasks) this.upsertTask(task);
    for (const tab of page.tabs) this.upsertTab(tab);
    this.next = page.next ?? null;
    return true;
  }

  /** Apply the event that directly follows `seq` (the caller checks the ordering).
   * @param {import("./types/workbench").EventFrame} frame */
  apply(frame) {
    switch (frame.event) {
      case "workspace.updated":
        this.workspace = frame.data;
        break;
      case "task.updated":
        this.upsertTask(frame.data);
        break;
      case "tab.updated":
        this.upsertTab(frame.data);
        break;
      case "tab.user_state":
        this.updateOwnState(frame.data);
        break;
      case "member.updated": {
        const member = frame.data;
        this.members.set(member.user, member);
        if (member.user === this.me && this.workspace) this.workspace = { ...this.workspace, role: member.role };
        break;
      }
      case "member.removed":
        this.members.delete(frame.data.user);
        break;
      case "private": // another member's own state changed: nothing of it is ours
        break;
      case "sandbox.updated":
        this.upsertSandbox(frame.data);
        break;
      case "provisioning.step":
        this.upsertStep(frame.data);
        break;
      case "message.created":
      case "message.updated":
        this.upsertMessage(frame.data);
        break;
      default:
        break; // unknown events may be added later: ignore them, but still advance seq
    }
    this.seq = frame.seq;
  }

  /** @param {Task} task */
  upsertTask(task) {
    upsert(this.tasks, task.id, task, { drop: task.archived });
    if (task.archived) {
      for (const tab of [...this.tabs.values()]) {
        if (tab.task === task.id) this.forgetTab(tab.id);
      }
    }
  }

  /** A tab from an event (every member's fields) or from REST (with my own unread and
   * draft): what is mine stays unless the data carries it.
   * @param {TabData} tab */
  upsertTab(tab) {
    if (this.closedTabs.has(tab.id)) return;
    if (tab.state === "closed") {
      this.forgetTab(tab.id);
      return;
    }
    const current = this.tabs.get(tab.id);
    upsert(this.tabs, tab.id, {
      unread: current ? current.unread : false,
      draft: current ? current.draft : "",
      ...tab,
    });
  }

  /** My own unread or draft of a tab changed (only the fields present).
   * @param {import("./types/workbench").TabUserState} state */
  updateOwnState({ tab: tabId, ...fields }) {
    const tab = this.tabs.get(tabId);
    if (tab) this.tabs.set(tabId, { ...tab, ...fields });
  }

  /** The workspace's members, owners first, then in the order they joined. */
  memberList() {
    const rank = (/** @type {Member} */ member) => (member.role === "owner" ? 0 : 1);
    return [...this.members.values()].sort(
      (a, b) => rank(a) - rank(b) || instant(a.joined_at) - instant(b.joined_at) || a.user - b.user,
    );
  }

  /** @param {string} tabId */
  forgetTab(tabId) {
    this.closedTabs.add(tabId);
    this.tabs.delete(tabId);
    this.messages.delete(tabId);
  }

  /** @param {Sandbox} sandbox */
  upsertSandbox(sandbox) {
    const task = this.tasks.get(sandbox.task);
    if (!task) return;
    const current = task.sandbox;
    // A task shows its live sandbox, else its latest attempt: the higher id wins.
    if (
      !current ||
      sandbox.id > current.id ||
      (sandbox.id === current.id && sandbox.version >= current.version)
    ) {
      this.tasks.set(task.id, { ...task, sandbox });
    }
  }

  /** @param {import("./types/workbench").StepEvent} data */
  upsertStep(data) {
    const task = this.tasks.get(data.task);
    const sandbox = task && task.sandbox;
    if (!sandbox || sandbox.id !== data.sandbox) return;
    const { task: _taskId, ...step } = data;
    const steps = sandbox.steps.filter((s) => s.id !== step.id);
    steps.push(step);
    steps.sort((a, b) => instant(a.started_at) - instant(b.started_at) || a.id - b.id);
    this.tasks.set(task.id, { ...task, sandbox: { ...sandbox, steps } });
  }

  /** @param {Message} message */
  upsertMessage(message) {
    if (this.closedTabs.has(message.tab)) return;
    let transcript = this.messages.get(message.tab);
    if (!transcript) {
      transcript = new Map();
      this.messages.set(message.tab, transcript);
    }
    upsert(transcript, message.id, message);
  }

  /** The tab's messages known so far, oldest first.
   * @param {string} tabId
   * @returns {Message[]} */
  transcript(tabId) {
    const transcript = this.messages.get(tabId);
    return transcript ? [...transcript.values()].sort((a, b) => a.id - b.id) : [];
  }

  /** The open tabs of a task, oldest first (the strip's order).
   * @param {number | null} taskId
   * @returns {Tab[]} */
  tabsOf(taskId) {
    return [...this.tabs.values()]
      .filter((tab) => tab.task === taskId)
      .sort((a, b) => instant(a.created_at) - instant(b.created_at) || a.id.localeCompare(b.id));
  }

  /** Tasks newest first, as the snapshot orders them.
   * @returns {Task[]} */
  taskList() {
    return [...this.tasks.values()].sort(
      (a, b) => instant(b.created_at) - instant(a.created_at) || b.id - a.id,
    );
  }
}
