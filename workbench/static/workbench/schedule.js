// @ts-check
// The render loop's two entry points, below the effects and the views so that neither
// imports the other for them: render() draws now, scheduleRender() once, at the next
// microtask, however many changes asked for it. What a render does (effects/render.js:
// settle the state, draw the page, act on what it needs) is registered by app.js at boot.
// Imports nothing.

const loop = {
  /** @type {() => void} */
  draw: () => {},
  queued: false,
};

/** @param {() => void} draw the page's whole render */
export function setRender(draw) {
  loop.draw = draw;
}

export function render() {
  loop.queued = false;
  loop.draw();
}

export function scheduleRender() {
  if (loop.queued) return;
  loop.queued = true;
  queueMicrotask(render);
}
