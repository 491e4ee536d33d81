// @ts-check
// Tiny DOM helpers: build elements, change only what differs, and keep keyed lists in
// place (so focus, scroll and text selection survive a re-render).

/** @typedef {Node | string | null | undefined | false} Child */

/**
 * h("button", {class: "x", type: "button", "aria-label": "Close"}, "×")
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [props] attributes; `class`, and `dataset` (an object)
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = String(value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(
    ...children.flat().filter(/** @returns {child is Node | string} */ (child) => child !== null && child !== undefined && child !== false),
  );
  return el;
}

/**
 * @param {Node} el
 * @param {string | null | undefined} text
 */
export function setText(el, text) {
  const value = text ?? "";
  if (el.textContent !== value) el.textContent = value;
}

/**
 * Set an attribute, or remove it for null/undefined/false.
 * @param {Element} el
 * @param {string} name
 * @param {string | number | boolean | null | undefined} value
 */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const text = value === true ? "" : String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/**
 * @param {HTMLElement} el
 * @param {boolean} visible
 */
export function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

/**
 * Make `container`'s children match `items`, one element per key: existing elements are
 * reused and moved, new ones built with `create(item)`, all refreshed with `update(el, item)`.
 * @template T
 * @param {HTMLElement} container
 * @param {T[]} items
 * @param {(item: T) => string | number} keyOf
 * @param {(item: T) => HTMLElement} create
 * @param {(el: HTMLElement, item: T) => void} update
 */
export function reconcile(container, items, keyOf, create, update) {
  /** @type {Map<string | undefined, HTMLElement>} */
  const existing = new Map();
  for (const child of /** @type {HTMLElement[]} */ ([...container.children])) existing.set(child.dataset.key, child);
  /** @type {HTMLElement | null} */
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (el !== expected) container.insertBefore(el, expected);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

/**
 * The element `selector` finds under `root`, if it is a `type` (HTMLElement by default).
 * @template {Element} [T=HTMLElement]
 * @param {ParentNode} root
 * @param {string} selector
 * @param {{new (): T, prototype: T}} [type]
 * @returns {T | null}
 */
export function find(root, selector, type) {
  const el = root.querySelector(selector);
  return el instanceof (type ?? HTMLElement) ? /** @type {T} */ (el) : null;
}

/**
 * A part of an element this page built (so always there): `find` that throws if it is not.
 * @template {Element} [T=HTMLElement]
 * @param {ParentNode} root
 * @param {string} selector
 * @param {{new (): T, prototype: T}} [type]
 * @returns {T}
 */
export function part(root, selector, type) {
  const el = find(root, selector, type);
  if (!el) throw new Error(`Missing ${selector}`);
  return el;
}

/**
 * The element an event happened in, or the nearest one above it, that `selector` matches.
 * @param {Event} event
 * @param {string} selector
 * @returns {HTMLElement | null}
 */
export function closestTarget(event, selector) {
  const target = event.target;
  const el = target instanceof Element ? target.closest(selector) : null;
  return el instanceof HTMLElement ? el : null;
}

/**
 * Whether the event happened on an element `selector` matches.
 * @param {Event} event
 * @param {string} selector
 */
export function targetMatches(event, selector) {
  return event.target instanceof Element && event.target.matches(selector);
}
