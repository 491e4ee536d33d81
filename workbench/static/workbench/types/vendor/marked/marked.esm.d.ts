// markdown.js imports marked as Daphne serves it (static/vendor/marked/, STATICFILES_DIRS):
// its types are the npm package's own.
export * from "marked";
