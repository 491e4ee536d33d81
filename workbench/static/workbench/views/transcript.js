// @ts-check
// The shown tab's transcript: prompts as typed, replies as sanitized markdown (the mock
// agent's echo unwrapped), kept scrolled to the end unless the reader scrolled up. Reads
// the state, writes the DOM, never requests. Imports views/elements.js, views/common.js,
// state.js, dom.js and markdown.js.

import { h, part, reconcile, setText, show } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { MESSAGE_STATES, MOCK_AGENT_NOTE } from "../state.js";
import { formatMessageTime } from "./common.js";
import { els } from "./elements.js";

/** @typedef {import("../types/workbench").Tab} Tab */
/** @typedef {import("../types/workbench").Message} Message */
/** @typedef {import("../model.js").WorkbenchModel} WorkbenchModel */

/**
 * @param {WorkbenchModel} model
 * @param {Tab} tab
 */
export function renderTranscript(model, tab) {
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

/** The mock agent answers with the JSON-RPC request it got (`{"echoed": {...}}`): show the
 * prompt it echoes rather than the envelope. Anything else (or a reply still streaming) as is.
 * @param {Tab} tab
 * @param {Message} message
 */
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
