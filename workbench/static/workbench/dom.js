// Tiny DOM helpers: build elements, change only what differs, and keep keyed lists in
// place (so focus, scroll and text selection survive a re-render).

/** h("button", {class: "x", type: "button", "aria-label": "Close"}, "×") */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return el;
}

export function setText(el, text) {
  const value = text ?? "";
  if (el.textContent !== value) el.textContent = value;
}

/** Set an attribute, or remove it for null/undefined/false. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const text = value === true ? "" : String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

export function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

/**
 * Make `container`'s children match `items`, one element per key: existing elements are
 * reused and moved, new ones built with `create(item)`, all refreshed with `update(el, item)`.
 */
export function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of [...container.children]) existing.set(child.dataset.key, child);
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
