import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, beforeEach, describe, it } from "node:test";
import { cacheFlavour, codeCacheDir } from "../../src/cli/code-cache.js";

const CODE_CACHE_MODULE = join(import.meta.dirname, "../../src/cli/code-cache.ts");
const work = mkdtempSync(join(tmpdir(), "ccache-"));
after(() => rmSync(work, { recursive: true, force: true }));

const program = join(work, "program.cjs");
const cacheDir = join(work, "cache");

/** A CommonJS program like the bundle: a hashbang, a relative require, strict mode, module.exports. */
function writeProgram(answer: string): void {
  writeFileSync(join(work, "helper.cjs"), "module.exports = (x) => `helper:${x}`;\n");
  writeFileSync(
    program,
    `#!/usr/bin/env node\n"use strict";\nconst helper = require("./helper.cjs");\nmodule.exports.answer = ${JSON.stringify(answer)};\n` +
      `process.stdout.write(helper(module.exports.answer) + " " + (__filename === ${JSON.stringify(program)}) + " " + (function () { return this === undefined; })());\n`,
  );
}

/** Runs `program` through runWithCodeCache in a fresh node, as the bin does. */
function runProgram(flavour = "run"): string {
  const script = `import { runWithCodeCache } from ${JSON.stringify(CODE_CACHE_MODULE)}; runWithCodeCache(${JSON.stringify(program)}, ${JSON.stringify(cacheDir)}, ${JSON.stringify(flavour)});`;
  const result = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

const cacheFiles = () => readdirSync(cacheDir).filter((name) => name.endsWith(".v8"));

beforeEach(() => rmSync(cacheDir, { recursive: true, force: true }));

describe("runWithCodeCache: the CLI bundle runs with V8's code cache", () => {
  it("runs the file as node would: hashbang, relative require, __filename, strict mode", () => {
    writeProgram("one");
    assert.equal(runProgram(), "helper:one true true");
  });

  it("writes a cache on the first run (0600 in a 0700 directory) and runs the same from it", () => {
    writeProgram("one");
    runProgram();
    const [file = "", ...others] = cacheFiles();
    assert.ok(file.endsWith("-run.v8"), file);
    assert.deepEqual(others, []);
    assert.equal(readdirSync(cacheDir, { withFileTypes: true }).length, 1, "no temporary file left behind");
    const written = readFileSync(join(cacheDir, file));
    assert.equal(runProgram(), "helper:one true true");
    assert.deepEqual(readFileSync(join(cacheDir, file)), written, "a cache that was used is not written again");
  });

  it("never runs a cache made for other source of the same length: the key is the content", () => {
    writeProgram("one");
    runProgram();
    const [before = ""] = cacheFiles();
    writeProgram("two"); // same length, other content: V8's own check would accept the old cache
    assert.equal(runProgram(), "helper:two true true");
    const after = cacheFiles();
    assert.equal(after.length, 2);
    assert.ok(after.includes(before));
  });

  it("keeps this build's caches and the previous build's (two installs used in turn), and drops older ones", () => {
    const seen = new Set<string>();
    const cacheOf = (answer: string): string => {
      writeProgram(answer);
      runProgram();
      const file = cacheFiles().find((name) => !seen.has(name)) ?? "";
      seen.add(file);
      return file;
    };
    const first = cacheOf("one");
    const second = cacheOf("two");
    const third = cacheOf("six");
    assert.deepEqual(cacheFiles().sort(), [second, third].sort());
    assert.ok(!cacheFiles().includes(first));
    // Back to the second build: its cache is still there, so nothing is written and nothing goes.
    writeProgram("two");
    runProgram();
    assert.deepEqual(cacheFiles().sort(), [second, third].sort());
  });

  it("ignores a damaged cache file and replaces it", () => {
    writeProgram("one");
    runProgram();
    const [file = ""] = cacheFiles();
    const path = join(cacheDir, file);
    const damaged = readFileSync(path);
    damaged.writeUInt8(damaged.readUInt8(damaged.length - 10) ^ 0xff, damaged.length - 10);
    writeFileSync(path, damaged);
    assert.equal(runProgram(), "helper:one true true");
    assert.notDeepEqual(readFileSync(path), damaged);
    writeFileSync(path, "short");
    assert.equal(runProgram(), "helper:one true true");
  });

  it("keeps one cache per subcommand", () => {
    writeProgram("one");
    runProgram("run");
    runProgram("exec");
    assert.deepEqual(cacheFiles().map((f) => f.replace(/^[0-9a-f]+-/, "")).sort(), ["exec.v8", "run.v8"]);
  });

  it("writes none after a run that ended with the failure exit code", () => {
    writeFileSync(program, "process.exitCode = 125;\n");
    const script = `import { runWithCodeCache } from ${JSON.stringify(CODE_CACHE_MODULE)}; runWithCodeCache(${JSON.stringify(program)}, ${JSON.stringify(cacheDir)}, "bogus", 125);`;
    assert.equal(spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]).status, 125);
    assert.deepEqual(cacheFiles(), []);
  });

  it("uses no cache from a directory others can write to", () => {
    writeProgram("one");
    mkdirSync(cacheDir, { mode: 0o700 });
    chmodSync(cacheDir, 0o777);
    assert.equal(runProgram(), "helper:one true true");
    assert.deepEqual(cacheFiles(), []);
  });

  it("runs without a cache when the directory cannot be made", () => {
    writeProgram("one");
    writeFileSync(cacheDir, "a file where the directory would go");
    assert.equal(runProgram(), "helper:one true true");
  });
});

describe("codeCacheDir and cacheFlavour", () => {
  it("lives in the user's cache directory; NODE_DISABLE_COMPILE_CACHE turns it off", () => {
    assert.equal(codeCacheDir({ HOME: "/home/u" }), "/home/u/.cache/cloister/compile");
    assert.equal(codeCacheDir({ HOME: "/home/u", XDG_CACHE_HOME: "/c" }), "/c/cloister/compile");
    assert.equal(codeCacheDir({ HOME: "/home/u", NODE_DISABLE_COMPILE_CACHE: "1" }), undefined);
  });

  it("names the cache after the subcommand, anything else after 'other'", () => {
    assert.equal(cacheFlavour(["node", "cloister", "run", "--", "true"]), "run");
    assert.equal(cacheFlavour(["node", "cloister", "--version"]), "other");
    assert.equal(cacheFlavour(["node", "cloister"]), "other");
    assert.equal(cacheFlavour(["node", "cloister", "../../etc/passwd"]), "other");
    assert.equal(cacheFlavour(["node", "cloister", "x".repeat(40)]), "other");
  });
});
