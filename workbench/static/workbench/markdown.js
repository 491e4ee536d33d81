// @ts-check
// Agent replies as markdown, made safe: `marked` renders it (GitHub flavoured, line breaks
// kept), raw HTML in the text is shown as text rather than interpreted, and DOMPurify then
// removes anything executable or loading from elsewhere that could remain. Both libraries
// come from npm (package.json) and are served as they ship (config/settings.py
// STATICFILES_DIRS): no build step.

import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import { Marked } from "../vendor/marked/marked.esm.js";

const escapes = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => escapes[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  // An agent (or a prompt it echoes) writing `<img onerror=…>` means the text, not an image.
  renderer: { html: ({ text }) => escapeHtml(text) },
});

// No images (a reply could make the page load any URL), forms or styles; links open
// elsewhere and tell the target nothing.
const PURIFY = {
  FORBID_TAGS: ["img", "picture", "video", "audio", "source", "form", "input", "button", "textarea", "select", "style"],
  FORBID_ATTR: ["style", "srcset"],
};
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** A sanitized DocumentFragment of `text` rendered as markdown. */
export function renderMarkdown(text) {
  const html = marked.parse(text ?? "", { async: false });
  return DOMPurify.sanitize(html, { ...PURIFY, RETURN_DOM_FRAGMENT: true });
}
