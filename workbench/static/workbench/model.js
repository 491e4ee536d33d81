// The client-side copy of one workspace's workbench: a snapshot plus events, applied by
// `seq` and by each object's `version` (docs/websocket.md, "Applying events"). It mirrors
// workbench_client.WorkbenchModel, plus transcripts, which the snapshot does not carry.

/** Put `data` under `key` unless the copy held is newer (a snapshot taken after the event). */
/** Timestamps compare as instants (DRF drops a zero fraction, so the strings do not sort). */
const instant = (value) => (value ? Date.parse(value) : 0);

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
    this.workspace = null;
    this.tasks = new Map(); // id -> task (with its current sandbox and that sandbox's steps)
    this.tabs = new Map(); // id -> tab; only open ones
    this.messages = new Map(); // tab id -> Map(message id -> message)
    // Closing is terminal, so a closed tab id never comes back: an older event (or a REST
    // answer) arriving after we learned of the close must not resurrect it.
    this.closedTabs = new Set();
  }

  loadSnapshot(frame) {
    this.seq = frame.seq;
    this.workspace = frame.workspace;
    this.tasks = new Map(frame.tasks.map((task) => [task.id, task]));
    this.tabs = new Map(frame.tabs.filter((tab) => !this.closedTabs.has(tab.id)).map((tab) => [tab.id, tab]));
    for (const tabId of this.messages.keys()) {
      if (!this.tabs.has(tabId)) this.messages.delete(tabId);
    }
  }

  /** Apply the event that directly follows `seq` (the caller checks the ordering). */
  apply(frame) {
    const { event, data } = frame;
    switch (event) {
      case "workspace.updated":
        this.workspace = data;
        break;
      case "task.updated":
        this.upsertTask(data);
        break;
      case "tab.updated":
        this.upsertTab(data);
        break;
      case "sandbox.updated":
        this.upsertSandbox(data);
        break;
      case "provisioning.step":
        this.upsertStep(data);
        break;
      case "message.created":
      case "message.updated":
        this.upsertMessage(data);
        break;
      default:
        break; // unknown events may be added later: ignore them, but still advance seq
    }
    this.seq = frame.seq;
  }

  upsertTask(task) {
    upsert(this.tasks, task.id, task, { drop: task.archived });
    if (task.archived) {
      for (const tab of [...this.tabs.values()]) {
        if (tab.task === task.id) this.forgetTab(tab.id);
      }
    }
  }

  upsertTab(tab) {
    if (this.closedTabs.has(tab.id)) return;
    if (tab.state === "closed") {
      this.forgetTab(tab.id);
      return;
    }
    upsert(this.tabs, tab.id, tab);
  }

  forgetTab(tabId) {
    this.closedTabs.add(tabId);
    this.tabs.delete(tabId);
    this.messages.delete(tabId);
  }

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

  upsertMessage(message) {
    if (this.closedTabs.has(message.tab)) return;
    let transcript = this.messages.get(message.tab);
    if (!transcript) {
      transcript = new Map();
      this.messages.set(message.tab, transcript);
    }
    upsert(transcript, message.id, message);
  }

  /** The tab's messages known so far, oldest first. */
  transcript(tabId) {
    const transcript = this.messages.get(tabId);
    return transcript ? [...transcript.values()].sort((a, b) => a.id - b.id) : [];
  }

  /** The open tabs of a task, oldest first (the strip's order). */
  tabsOf(taskId) {
    return [...this.tabs.values()]
      .filter((tab) => tab.task === taskId)
      .sort((a, b) => instant(a.created_at) - instant(b.created_at) || a.id.localeCompare(b.id));
  }

  /** Tasks newest first, as the snapshot orders them. */
  taskList() {
    return [...this.tasks.values()].sort(
      (a, b) => instant(b.created_at) - instant(a.created_at) || b.id - a.id,
    );
  }
}
