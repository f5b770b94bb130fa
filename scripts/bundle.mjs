#!/usr/bin/env node
// Bundles the CLI and the guardian daemon (from tsc's dist/) into dist/bundle/, which is what the
// `cloister` bin runs. The library entry (dist/index.js) stays unbundled: its users bundle it themselves.
// Also builds the approval UI's browser app (ui/) into dist/ui/, which the guardian serves.
//
// The CLI is started for every command, so its start-up is built for speed (measured on this 2-core
// VM, `cloister --version` above a bare `node -e ''`):
// - one CommonJS file, cli.cjs: node's ES module loader costs ~15 ms more to start than require(),
//   and each further ES chunk adds its own resolve/load/link (~60 tsc modules cost ~40 ms, an ESM
//   bundle with 11 static chunks ~90 ms above node, this file ~50 ms);
// - the libraries only some commands need (zod, yaml, tldts, smol-toml: ~1 MB, used to load and check
//   config) are not in it but in vendor/*.cjs beside it, required when first used: V8 pre-parses every
//   byte of a script it compiles, so carrying them inline cost every command ~20 ms;
// - the bin, main.cjs (src/cli/bin.ts), runs cli.cjs with V8's code cache (src/cli/code-cache.ts):
//   another ~30 ms;
// - whitespace and syntax are minified, names are kept (stack traces stay readable with CLOISTER_DEBUG).
// The guardian daemon starts once per user session: it stays one ES module bundle with lazy chunks.
import { build } from "esbuild";
import { randomUUID } from "node:crypto";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
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

/** Libraries the CLI requires from vendor/NAME.cjs instead of carrying them (see the top of this file). */
const CLI_VENDORED = ["zod", "yaml", "tldts", "smol-toml"];

/**
 * Resolves the vendored libraries to their files beside cli.cjs. Each is bundled on its own, so
 * none may share state with another (no two of them import a common library) or be imported by a
 * subpath, which would load a second copy: both fail the build here.
 */
const vendorPlugin = {
  name: "cloister-vendor",
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(${CLI_VENDORED.join("|")})(/|$)`) }, (args) => {
      if (!CLI_VENDORED.includes(args.path)) return { errors: [{ text: `import ${args.path} by its package name only: it is vendored whole (scripts/bundle.mjs)` }] };
      return { path: `./vendor/${args.path}.cjs`, external: true };
    });
  },
};

/**
 * How the CLI's files are built: CommonJS, minified but for names (see the top of this file).
 * import() is turned into require(): an import() of a vendored library stays one of the bundle's
 * vendor/NAME.cjs, and node's import of that file has only a `default` export (the names of a
 * module.exports assigned at run time cannot be found in advance), so `const { parse } = await
 * import("yaml")`, right under tsc's build, found no parse in the bundle (QA: the completion of
 * custom agents). esbuild's require gives the library's names, as node gives them for the package.
 */
const CLI_FORMAT = {
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  supported: { "dynamic-import": false },
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: "warning",
};

async function bundleCli(outdir) {
  await build({
    ...CLI_FORMAT,
    entryPoints: { main: join(root, "dist/cli/bin.js"), cli: join(root, "dist/cli/main.js") },
    outdir,
    outExtension: { ".js": ".cjs" },
    // The sources are ES modules that find files beside themselves (the daemon, the package root)
    // through import.meta.url: in this one file that is the file's own URL.
    define: { "import.meta.url": "__cloisterModuleUrl" },
    // "use strict" first: a directive counts only at the top, and the sources are (strict) modules.
    banner: { js: "\"use strict\"; const __cloisterModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
    plugins: [vendorPlugin],
  });
  for (const name of CLI_VENDORED) {
    await build({
      stdin: { contents: `module.exports = require(${JSON.stringify(name)});`, resolveDir: root, sourcefile: `vendor-${name}.cjs` },
      outfile: join(outdir, "vendor", `${name}.cjs`),
      ...CLI_FORMAT,
    });
  }
}

async function bundleDaemon(outdir) {
  await build({
    // The audit worker is a thread of the guardian started from its own file (src/audit/log.ts).
    entryPoints: { daemon: join(root, "dist/guardian/daemon.js"), "audit-worker": join(root, "dist/audit/audit-worker.js") },
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Chunks sit next to the entry; the CLI finds the daemon as ./daemon.js beside itself.
    chunkNames: "[name]-[hash]",
    // commander is CommonJS; its require() calls need a require in ESM.
    banner: { js: "import { createRequire as cloisterCreateRequire } from 'node:module'; const require = cloisterCreateRequire(import.meta.url);" },
    logLevel: "warning",
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const outdir = join(root, "dist/bundle");
  // Chunk names carry content hashes: without this, every build would leave the last one's behind.
  rmSync(outdir, { recursive: true, force: true });
  await Promise.all([bundleCli(outdir), bundleDaemon(outdir)]);
  await bundleUi(join(root, "dist/ui"));
  // Tells a running guardian from an older build apart from this one (src/guardian/control-client.ts).
  writeFileSync(join(root, "dist/build-id"), `${randomUUID()}\n`);
}
