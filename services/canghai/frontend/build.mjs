// Copy the dist files the console needs from node_modules (pinned by package-lock.json)
// into the Python package's static dir, so the console never loads anything from a CDN.
// Run by `make frontend` (part of `make install`) and by deploy/Dockerfile.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "butterfly_canghai", "static", "vendor");
const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  "htmx.org/LICENSE": "htmx.LICENSE.txt",
  "uplot/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
  "uplot/dist/uPlot.min.css": "uPlot.min.css",
  "uplot/LICENSE": "uPlot.LICENSE.txt",
};
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [from, to] of Object.entries(files)) {
  copyFileSync(join(here, "node_modules", from), join(out, to));
  console.log(`static/vendor/${to}`);
}
