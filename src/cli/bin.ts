#!/usr/bin/env node
// The `cloister` command as installed: runs the CLI bundle beside this file (cli.cjs, built from
// main.ts by scripts/bundle.mjs) through the code cache. Kept apart from the CLI so that what the
// cache holds is the CLI alone.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLOISTER_FAILED } from "../errors.js";
import { cacheFlavour, codeCacheDir, runWithCodeCache } from "./code-cache.js";

runWithCodeCache(join(dirname(fileURLToPath(import.meta.url)), "cli.cjs"), codeCacheDir(process.env), cacheFlavour(process.argv), CLOISTER_FAILED);
