#!/usr/bin/env node
// The CLI's entry (dist/bundle/main.cjs, started by bin/cloister): runs the CLI bundle beside it
// (cli.cjs, built from main.ts by scripts/bundle.mjs) through the code cache. Kept apart from the
// CLI so that what the cache holds is the CLI alone.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLOISTER_FAILED } from "../errors.js";
import { cacheFlavour, codeCacheDir, runWithCodeCache } from "./code-cache.js";

// bin/cloister set the user's NODE_EXTRA_CA_CERTS aside so node would not parse it for the CLI,
// which makes no TLS connection: put it back for everything the CLI starts.
const hostExtraCerts = process.env.CLOISTER_HOST_NODE_EXTRA_CA_CERTS;
if (hostExtraCerts !== undefined) {
  process.env.NODE_EXTRA_CA_CERTS = hostExtraCerts;
  delete process.env.CLOISTER_HOST_NODE_EXTRA_CA_CERTS;
}

runWithCodeCache(join(dirname(fileURLToPath(import.meta.url)), "cli.cjs"), codeCacheDir(process.env), cacheFlavour(process.argv), CLOISTER_FAILED);
