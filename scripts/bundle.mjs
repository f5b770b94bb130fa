#!/usr/bin/env node
// Bundles the CLI and the guardian daemon (from tsc's dist/) into dist/bundle/, which is what the
// `cloister` bin runs. Loading ~60 ES modules one by one cost the CLI about 40 ms per invocation;
// one file (plus lazily loaded chunks for the config, policy and doctor code) loads in a fraction.
// The library entry (dist/index.js) stays unbundled: its users bundle it themselves.
// Also builds the approval UI's browser app (ui/) into dist/ui/, which the guardian serves.
import { build } from "esbuild";
import { randomUUID } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The browser app from its TypeScript source (not tsc's output: ui/ is not part of the library), plus
 * its page and style. Exported so the browser tests build the current source into a directory of their own.
 */
export async function bundleUi(outdir) {
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [join(root, "ui/app.ts")],
    outfile: join(outdir, "app.js"),
    tsconfig: join(root, "ui/tsconfig.json"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    logLevel: "warning",
  });
  for (const file of ["index.html", "style.css"]) copyFileSync(join(root, "ui", file), join(outdir, file));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
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
  await bundleUi(join(root, "dist/ui"));
  // Tells a running guardian from an older build apart from this one (src/guardian/control-client.ts).
  writeFileSync(join(root, "dist/build-id"), `${randomUUID()}\n`);
}
