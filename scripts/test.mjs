#!/usr/bin/env node
// The test command (`npm test`): build, then run every test file with node's test runner.
// Unit tests first (fast, no sandbox), then integration and escape tests (real bwrap, real guardian).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const run = (cmd, args) => spawnSync(cmd, args, { stdio: "inherit" }).status ?? 1;

if (run("npm", ["run", "--silent", "build"]) !== 0) process.exit(1);

const files = ["test/unit", "test/integration", "test/escape"].flatMap((dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts"))
    .sort()
    .map((f) => join(dir, f)),
);
const extra = process.argv.slice(2);
// Integration tests start real sandboxes and guardians; one file at a time keeps a 2-core machine sane.
process.exit(run(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...extra, ...(extra.some((a) => !a.startsWith("-")) ? [] : files)]));
