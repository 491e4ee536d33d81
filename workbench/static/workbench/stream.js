// @ts-check
// The workbench websocket (docs/websocket.md): a snapshot, then events applied strictly in
// `seq` order; a gap (or a pong ahead of us) asks for a resume; a dropped connection is
// reconnected with exponential backoff and jitter, asking with `?seq=` for only the events
// it missed (or a snapshot when they are too old). Mirrors workbench_client.WorkbenchClient.
// It also tells the server which tab the page shows (`view`), again on every connection:
// the server forgets it when a socket closes.

import { WorkbenchModel } from "./model.js";

const CLOSE_FORBIDDEN = 4403;
export const NO_ACCESS = "no access to this workspace";

/** @typedef {import("./types/workbench").ConnectionStatus} ConnectionStatus */

/**
 * @typedef {object} StreamOptions
 * @property {(change: import("./types/workbench").Change) => void} [onChange]
 * @property {(status: ConnectionStatus, detail: string) => void} [onStatus]
 * @property {number} [heartbeatMs]
 * @property {number} [deadAfterMs]
 */

export class WorkbenchStream {
  /**
   * onChange({kind: "snapshot", first} | {kind: "event", frame}) after the model changed;
   * onStatus(status, detail) with status "connecting" | "connected" | "reconnecting" | "offline".
   * @param {string} url
   * @param {StreamOptions} [options]
   */
  constructor(url, { onChange, onStatus, heartbeatMs = 10_000, deadAfterMs = 25_000 } = {}) {
    this.url = url;
    this.onChange = onChange || (() => {});
    this.onStatus = onStatus || (() => {});
    this.heartbeatMs = heartbeatMs;
    this.deadAfterMs = deadAfterMs;
    this.minBackoffMs = 250;
    this.maxBackoffMs = 10_000;
    this.model = new WorkbenchModel();
    /** @type {ConnectionStatus} */
    this.status = "connecting";
    /** @type {WebSocket | null} */
    this.ws = null;
    this.failures = 0; // consecutive connections that ended before a snapshot
    this.snapshots = 0;
    /** @type {number | null} one resume per gap: its replay fills it */
    this.resumingFrom = null;
    this.lastFrameAt = 0;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.heartbeat = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    this.stopped = false;
    /** @type {string | null} the tab the page shows (null: none, or the page is hidden) */
    this.viewing = null;
    /** @type {string | null | undefined} what the current connection was last told */
    this.viewSent = null;
    this.onOnline = () => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.setStatus("connected");
      else this.reconnectNow();
    };
    this.onOffline = () => this.setStatus("offline", "no network");
  }

  start() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.retryTimer);
    this.detach(1000);
  }

  /** @param {ConnectionStatus} status */
  setStatus(status, detail = "") {
    this.status = status;
    this.onStatus(status, detail);
  }

  connect() {
    this.retryTimer = undefined;
    if (this.snapshots === 0 && this.failures === 0) this.setStatus("connecting");
    // Reconnecting: the server replays what we missed instead of sending a whole snapshot.
    const resuming = this.snapshots > 0;
    const url = resuming ? `${this.url}?seq=${this.model.seq}` : this.url;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.lastFrameAt = Date.now();
      this.resumingFrom = resuming ? this.model.seq : null; // that replay fills the gap
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
      // Nothing missed means nothing replayed: a pong shows the connection is up.
      if (resuming) this.send({ type: "ping" });
      // A new socket views nothing until told; the heartbeat's pings keep the claim alive.
      this.viewSent = null;
      this.view(this.viewing);
    };
    ws.onmessage = (message) => {
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return; // not ours to fix; the next event or pong brings us back in line
      }
      this.handle(frame);
    };
    ws.onclose = (close) => {
      if (this.ws === ws) this.dropped(close.code);
    };
    // onerror is always followed by onclose, which decides what to do.
    ws.onerror = () => {};
  }

  /** Forget the current socket (closing it if it is still up); its late callbacks are ignored. */
  /** @param {number} code */
  detach(code) {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code);
  }

  /** @param {number} code */
  dropped(code) {
    this.detach(1000);
    if (this.stopped) return;
    if (code === CLOSE_FORBIDDEN) {
      // Not a member (or logged out): reconnecting cannot help.
      this.setStatus("offline", NO_ACCESS);
      return;
    }
    const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.failures);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: reconnects spread out
    this.failures += 1;
    this.setStatus(navigator.onLine === false ? "offline" : "reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** The network came back, or the user asked: skip the remaining backoff. */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  beat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastFrameAt > this.deadAfterMs) {
      this.dropped(1006); // silent for too long (a dead peer or NAT): start over
      return;
    }
    this.send({ type: "ping" });
  }

  /** @param {Record<string, unknown>} frame */
  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /**
   * "This page shows tab `tabId`" (null: none, or the page is hidden): the server keeps that
   * tab read for this user while it is shown. Sent on changes and on each new connection;
   * `again` re-sends it (the tab turned unread anyway: viewing clears it).
   * @param {string | null | undefined} tabId
   */
  view(tabId, { again = false } = {}) {
    this.viewing = tabId ?? null;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (!again && this.viewSent === this.viewing) return;
    this.viewSent = this.viewing;
    this.send({ type: "view", tab: this.viewing });
  }

  resume() {
    if (this.resumingFrom === this.model.seq) return;
    this.resumingFrom = this.model.seq;
    this.send({ type: "resume", seq: this.model.seq });
  }

  /** @param {import("./types/workbench").Frame} frame */
  handle(frame) {
    const model = this.model;
    if (frame.type !== "snapshot" && this.snapshots > 0 && this.status !== "connected") {
      this.failures = 0;
      this.setStatus("connected"); // back, and caught up by the replay that comes first
    }
    switch (frame.type) {
      case "snapshot": {
        model.loadSnapshot(frame);
        this.resumingFrom = null;
        this.failures = 0;
        this.snapshots += 1;
        this.setStatus("connected");
        this.onChange({ kind: "snapshot", first: this.snapshots === 1 });
        break;
      }
      case "event": {
        if (frame.seq <= model.seq) return; // a duplicate, or already in the snapshot
        if (frame.seq > model.seq + 1) {
          this.resume(); // a gap: the missing events come first
          return;
        }
        model.apply(frame);
        this.resumingFrom = null;
        this.onChange({ kind: "event", frame });
        break;
      }
      case "pong":
        if (typeof frame.seq === "number" && frame.seq > model.seq) this.resume();
        break;
      case "error":
        console.warn("workbench stream:", frame.code, frame.message);
        break;
      default:
        break;
    }
  }
}
