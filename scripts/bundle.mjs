#!/usr/bin/env node
// Bundles the CLI and the guardian daemon (from tsc's dist/) into dist/bundle/, which is what the
// `cloister` bin runs. Loading ~60 ES modules one by one cost the CLI about 40 ms per invocation;
// one file (plus lazily loaded chunks for the config, policy and doctor code) loads in a fraction.
// The library entry (dist/index.js) stays unbundled: its users bundle it themselves.
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

await build({
  entryPoints: { main: join(root, "dist/cli/main.js"), daemon: join(root, "dist/guardian/daemon.js") },
  outdir: join(root, "dist/bundle"),
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Chunks sit next to the entries: modules find the daemon as ./daemon.js beside themselves.
  chunkNames: "[name]-[hash]",
  // commander is CommonJS; its require() calls need a require in ESM.
  banner: { js: "import { createRequire as cloisterCreateRequire } from 'node:module'; const require = cloisterCreateRequire(import.meta.url);" },
  logLevel: "warning",
});
