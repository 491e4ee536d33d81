// markdown.js imports DOMPurify as Daphne serves it (static/vendor/dompurify/,
// STATICFILES_DIRS): its types are the npm package's own.
export * from "dompurify";
export { default } from "dompurify";
