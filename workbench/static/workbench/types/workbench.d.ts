// The shapes the REST API and the websocket carry (the server's TypedDicts: tasks_app,
// sandboxes, core and workbench serializers), for the type checker only: the browser never
// loads this file. JSDoc in the modules refers to them as import("./types/workbench").Tab.

export interface PlannedStep {
  name: string;
  estimate_ms: number | null;
}

export interface Step {
  id: number;
  sandbox: number;
  name: string;
  outcome: string;
  detail: string;
  log: string;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
}

/** A provisioning.step event's data: a step and its task. */
export interface StepEvent extends Step {
  task: number;
}

export interface ModelChoice {
  value: string;
  name: string;
}

export interface Sandbox {
  id: number;
  task: number;
  provider: string;
  agent: string;
  state: string;
  error_code: string;
  error_message: string;
  version: number;
  created_at: string;
  ready_at: string | null;
  destroyed_at: string | null;
  models: ModelChoice[];
  default_model: string;
  plan: PlannedStep[];
  steps: Step[];
}

export interface Task {
  id: number;
  workspace: number;
  title: string;
  repository: string;
  branch: string;
  provider: string;
  agent: string;
  archived: boolean;
  version: number;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
  sandbox: Sandbox | null;
}

/** POST .../tasks/ with a prompt also answers its first tab and the queued prompt. */
export interface StartedTask extends Task {
  first_tab: Tab | null;
  first_message: Message | null;
}

export interface Tab {
  id: string;
  workspace: number;
  task: number;
  sandbox: number | null;
  title: string;
  agent: string;
  state: string;
  error_code: string;
  error_message: string;
  session_id: string;
  model: string;
  session_model: string;
  attempt: number;
  version: number;
  created_at: string;
  updated_at: string;
  state_changed_at: string;
  ready_at: string | null;
  closed_at: string | null;
  /** When the agent turn now running started (a prompt `sending`); null when none runs. */
  running_since: string | null;
  /** Mine only: in REST answers and snapshots, not in tab.updated events. */
  unread: boolean;
  draft: string;
}

export interface TabUserState {
  tab: string;
  unread?: boolean;
  draft?: string;
}

export interface Message {
  id: number;
  tab: string;
  workspace: number;
  role: string;
  text: string;
  state: string;
  error_message: string;
  reply_to: number | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface Member {
  workspace: number;
  user: number;
  username: string;
  name: string;
  role: string;
  joined_at: string;
}

export interface Workspace {
  id: number;
  name: string;
  role?: string;
  [field: string]: unknown;
}

export interface Agent {
  name: string;
  [field: string]: unknown;
}

/** A page of the workbench after the snapshot's (GET of its `next`). */
export interface WorkbenchPage {
  tasks: Task[];
  tabs: TabData[];
  next?: string | null;
}

/** The snapshot is mine: its tabs carry my unread and draft. */
export interface Snapshot extends WorkbenchPage {
  type: "snapshot";
  tabs: Tab[];
  seq: number;
  me: number;
  workspace: Workspace;
  members: Member[];
}

/** A tab.updated event's tab: every member's fields, without my own unread and draft. */
export type TabData = Omit<Tab, "unread" | "draft"> & Partial<Pick<Tab, "unread" | "draft">>;

export type EventFrame = { type: "event"; seq: number } & (
  | { event: "workspace.updated"; data: Workspace }
  | { event: "task.updated"; data: Task }
  | { event: "tab.updated"; data: TabData }
  | { event: "tab.user_state"; data: TabUserState }
  | { event: "member.updated"; data: Member }
  | { event: "member.removed"; data: { workspace: number; user: number } }
  | { event: "sandbox.updated"; data: Sandbox }
  | { event: "provisioning.step"; data: StepEvent }
  | { event: "message.created" | "message.updated"; data: Message }
  | { event: "private"; data: unknown }
);

export interface PongFrame {
  type: "pong";
  seq?: number;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
}

export type Frame = Snapshot | EventFrame | PongFrame | ErrorFrame;

export type Change = { kind: "snapshot"; first: boolean; frame?: undefined } | { kind: "event"; frame: EventFrame };

export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "offline";
