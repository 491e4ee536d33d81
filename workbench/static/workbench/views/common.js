// @ts-check
// What several views share: the notice (the page's one-line error), the connection
// indicator, durations and times in words, and the running badge with its ticking timer.
// DOM writes only, no requests. Imports the elements, the DOM helpers and nothing above.

import { h, part, setText, show } from "../dom.js";
import { els } from "./elements.js";

// -- notices and the connection indicator -------------------------------------------------

const notice = {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
};

/**
 * Say something went wrong, for 10 s (or until dismissed).
 * @param {string} text
 */
export function notify(text) {
  setText(part(els.notice, ".notice-text"), text);
  show(els.notice, true);
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => show(els.notice, false), 10_000);
}

/**
 * @param {import("../types/workbench").ConnectionStatus} status
 * @param {string} detail
 */
export function renderConnection(status, detail) {
  const labels = {
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: "Reconnecting…",
    offline: "Offline",
  };
  els.connection.dataset.state = status;
  const text = detail && status !== "connected" ? `${labels[status]} (${detail})` : labels[status];
  setText(part(els.connection, ".connection-label"), text);
}

// -- durations, times and running turns ---------------------------------------------------

/**
 * @param {number | null | undefined} ms
 */
export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * @param {number} seconds
 */
export function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/**
 * "~3 s", "~2 min": how long a step usually takes (from earlier runs), rounded.
 * @param {number} ms
 */
export function formatEstimate(ms) {
  const seconds = Math.max(1, Math.round(ms / 1000));
  return seconds < 60 ? `~${seconds} s` : `~${Math.round(seconds / 60)} min`;
}

/**
 * "14:03" today, else "12 Mar, 14:03": when a message was written.
 * @param {Date} at
 */
export function formatMessageTime(at) {
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (at.toDateString() === new Date().toDateString()) return time;
  return `${at.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/**
 * A spinner and the time since `since`, ticking (tickElapsed).
 * @param {string} className
 */
export function runningBadge(className) {
  return h(
    "span",
    { class: `running ${className}`, hidden: true },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    h("span", { class: "running-label" }, "running "),
    h("span", { class: "elapsed", "aria-hidden": "true" }),
  );
}

/**
 * @param {HTMLElement} badge
 * @param {string | null} since
 */
export function showRunning(badge, since) {
  show(badge, Boolean(since));
  const elapsed = part(badge, ".elapsed");
  if (since && elapsed.dataset.since !== since) {
    elapsed.dataset.since = since;
    setText(elapsed, formatElapsed((Date.now() - Date.parse(since)) / 1000));
  }
}

export function tickElapsed() {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".elapsed[data-since]"))) {
    const since = Date.parse(el.dataset.since ?? "");
    if (!Number.isNaN(since)) setText(el, formatElapsed((Date.now() - since) / 1000));
  }
}
