import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { locateAgent, mountRoot, scriptInterpreter, type LocateContext } from "../../src/agents/locate.js";
import { npmGlobalPrefix } from "../../src/agents/npm-prefix.js";
import { resolveAgent, type AgentDefinition } from "../../src/agents/registry.js";
import { CloisterError } from "../../src/errors.js";

let base: string;
before(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "agents-locate-")));
});
after(() => rmSync(base, { recursive: true, force: true }));

function executable(path: string, text = "#!/bin/sh\necho hi\n"): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

/** A fresh fake host: its own HOME, PATH dirs, npm prefix and managed dir. */
function host(name: string, overrides: Partial<LocateContext> = {}): LocateContext & { root: string } {
  const root = join(base, name);
  mkdirSync(join(root, "home"), { recursive: true });
  return {
    root,
    hostHome: join(root, "home"),
    pathEnv: `${join(root, "bin1")}:relative/dir:${join(root, "bin2")}`,
    managedDir: join(root, "data", "agents"),
    npmPrefix: () => undefined,
    systemDirs: ["/usr", "/bin", "/lib", "/opt"],
    ...overrides,
  };
}

/** An npm package with a bin link, the way npm lays it out. */
function npmPackage(nodeModules: string, pkg: string, bin: string, binDir: string, text?: string): string {
  const dir = join(nodeModules, ...pkg.split("/"));
  executable(join(dir, bin), text);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: pkg, version: "1.2.3" }));
  mkdirSync(binDir, { recursive: true });
  const link = join(binDir, "claude");
  symlinkSync(join(dir, bin), link);
  return link;
}

const claude = resolveAgent("claude", {});

describe("locate: where the agent is found", () => {
  test("nowhere: undefined", () => {
    assert.equal(locateAgent(claude, host("none")), undefined);
  });

  test("on PATH: the first PATH dir that has it wins; relative PATH entries are ignored", () => {
    const h = host("path");
    executable(join(h.root, "bin2", "claude"));
    executable(join(h.root, "relative", "dir", "claude"));
    const found = locateAgent(claude, h);
    assert.equal(found?.how, "PATH");
    assert.equal(found?.path, join(h.root, "bin2", "claude"));
    executable(join(h.root, "bin1", "claude"));
    assert.equal(locateAgent(claude, h)?.path, join(h.root, "bin1", "claude"));
  });

  test("a file that is not executable does not count", () => {
    const h = host("noexec");
    mkdirSync(join(h.root, "bin1"), { recursive: true });
    writeFileSync(join(h.root, "bin1", "claude"), "x");
    assert.equal(locateAgent(claude, h), undefined);
  });

  test("the native installer: ~/.local/bin/claude → ~/.local/share/claude/versions/X; the version file is mounted, not ~/.local/bin", () => {
    const h = host("native");
    const real = executable(join(h.hostHome, ".local/share/claude/versions/2.1.197"), "\x7fELF...");
    mkdirSync(join(h.hostHome, ".local/bin"), { recursive: true });
    symlinkSync(real, join(h.hostHome, ".local/bin/claude"));
    const found = locateAgent(claude, h);
    assert.equal(found?.how, "native");
    assert.equal(found?.realPath, real);
    assert.equal(found?.exec, real);
    assert.deepEqual(found?.mounts, [real]);
    assert.equal(found?.version, "2.1.197");
  });

  test("npm's global prefix (in HOME): the lib/node_modules tree is mounted; the real file runs", () => {
    const prefix = join(base, "npmprefix", "home", ".npm-global");
    const h = host("npmprefix", { npmPrefix: () => prefix });
    const link = npmPackage(join(prefix, "lib/node_modules"), "@anthropic-ai/claude-code", "bin/claude.exe", join(prefix, "bin"));
    const found = locateAgent(claude, h);
    assert.equal(found?.how, "npm");
    assert.equal(found?.path, link);
    assert.deepEqual(found?.mounts, [join(prefix, "lib/node_modules")]);
    assert.equal(found?.exec, join(prefix, "lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"));
    assert.equal(found?.version, "1.2.3");
  });

  test("cloister's managed copy: used last; the .bin link inside the mounted tree is what runs", () => {
    const h = host("managed");
    const nodeModules = join(h.managedDir, "claude", "node_modules");
    const link = npmPackage(nodeModules, "@anthropic-ai/claude-code", "bin/claude.exe", join(nodeModules, ".bin"));
    const found = locateAgent(claude, h);
    assert.equal(found?.how, "managed");
    assert.deepEqual(found?.mounts, [nodeModules]);
    assert.equal(found?.exec, link);
    executable(join(h.root, "bin1", "claude"));
    assert.equal(locateAgent(claude, h)?.how, "PATH", "an agent the user installed wins over the managed copy");
  });

  test("an absolute command from config is used as it is, or not at all", () => {
    const h = host("absolute");
    const path = executable(join(h.root, "opt-x", "my-agent"));
    const agent = resolveAgent("mine", { mine: { command: path, args: [], env: [], config_dirs: [] } });
    assert.equal(locateAgent(agent, h)?.how, "config");
    const missing = resolveAgent("mine", { mine: { command: join(h.root, "nope"), args: [], env: [], config_dirs: [] } });
    assert.equal(locateAgent(missing, h), undefined);
  });

  test("an install under the system dirs needs no mount", () => {
    const h = host("system", { pathEnv: "/usr/bin", systemDirs: ["/usr"] });
    const sh = resolveAgent("shell", { shell: { command: "sh", args: [], env: [], config_dirs: [] } });
    const found = locateAgent(sh, h);
    assert.ok(found);
    assert.deepEqual(found.mounts, []);
  });
});

describe("locate: scripts and their interpreter", () => {
  test("#!/usr/bin/env node with node outside the system dirs: node is mounted and linked by name", () => {
    const h = host("interp");
    const node = executable(join(h.hostHome, ".nvm/versions/node/v20/bin/node"), "\x7fELF");
    h.pathEnv = `${dirname(node)}:${join(h.root, "bin1")}`;
    executable(join(h.root, "bin1", "claude"), "#!/usr/bin/env node\nconsole.log(1)\n");
    const found = locateAgent(claude, h);
    assert.deepEqual(found?.links, [{ name: "node", target: node }]);
    assert.ok(found?.mounts.includes(node));
  });

  test("a program in a Python venv (pipx, uv tool): the venv is mounted, its python works from there", () => {
    const h = host("venv");
    const venv = join(h.hostHome, ".local/pipx/venvs/aider");
    mkdirSync(venv, { recursive: true });
    writeFileSync(join(venv, "pyvenv.cfg"), "home = /usr/bin\n");
    const python = executable(join(h.root, "sys", "python3"), "\x7fELF");
    mkdirSync(join(venv, "bin"), { recursive: true });
    symlinkSync(python, join(venv, "bin", "python"));
    executable(join(venv, "bin", "aider"), `#!${join(venv, "bin", "python")}\nimport aider\n`);
    mkdirSync(join(h.hostHome, ".local/bin"), { recursive: true });
    symlinkSync(join(venv, "bin", "aider"), join(h.hostHome, ".local/bin/aider"));
    h.pathEnv = join(h.hostHome, ".local/bin");
    const aider = resolveAgent("aider", { aider: { command: "aider", args: [], env: [], config_dirs: [] } });
    const found = locateAgent(aider, h);
    assert.deepEqual(found?.mounts, [venv, python]);
    assert.equal(found?.exec, join(venv, "bin", "aider"));
  });

  test("an interpreter in the system dirs needs nothing", () => {
    const h = host("interp-system", { systemDirs: ["/usr", "/bin"] });
    h.pathEnv = `/usr/bin:/bin:${join(h.root, "bin1")}`;
    executable(join(h.root, "bin1", "claude"), "#!/usr/bin/env sh\necho\n");
    const found = locateAgent(claude, h);
    assert.deepEqual(found?.links, []);
    assert.deepEqual(found?.mounts, [join(h.root, "bin1", "claude")]);
  });

  test("a missing interpreter is an error that says which", () => {
    const h = host("interp-missing");
    executable(join(h.root, "bin1", "claude"), "#!/usr/bin/env no-such-node-xyz\n");
    assert.throws(() => locateAgent(claude, h), (error: unknown) => error instanceof CloisterError && /no-such-node-xyz/.test(error.message));
  });

  test("a missing interpreter's hint offers `cloister agent install` only to an agent with an npm package", () => {
    const h = host("interp-missing-custom");
    executable(join(h.root, "bin1", "weird"), "#!/usr/bin/env no-such-interp-xyz\n");
    const hintOf = (agent: AgentDefinition): string => {
      try {
        locateAgent(agent, h);
      } catch (error) {
        if (error instanceof CloisterError) return error.hint ?? "";
      }
      return assert.fail("not refused");
    };
    assert.equal(hintOf(resolveAgent("weird", { weird: { command: "weird", args: [], env: [], config_dirs: [] } })), "install no-such-interp-xyz");
    assert.equal(hintOf(resolveAgent("weird", { weird: { command: "weird", args: [], env: [], config_dirs: [], npm: "weird-cli" } })), "install no-such-interp-xyz, or run `cloister agent install weird`");
  });

  test("shebang forms", () => {
    const dir = join(base, "shebangs");
    assert.deepEqual(scriptInterpreter(executable(join(dir, "a"), "#!/usr/bin/env -S node --no-warnings\n")), { name: "node", byName: true });
    assert.deepEqual(scriptInterpreter(executable(join(dir, "b"), "#!/opt/node/bin/node\n")), { name: "node", byName: false, path: "/opt/node/bin/node" });
    assert.equal(scriptInterpreter(executable(join(dir, "c"), "\x7fELF\x02\x01")), undefined);
  });
});

describe("locate: what gets mounted", () => {
  const ctx = { systemDirs: ["/usr", "/opt"], hostHome: "/home/u" };
  test("the outermost node_modules above the program, never HOME or above", () => {
    assert.equal(mountRoot("/home/u/.nvm/v20/lib/node_modules/@x/y/node_modules/z/bin/z", ctx), "/home/u/.nvm/v20/lib/node_modules");
    assert.equal(mountRoot("/usr/lib/node_modules/x/bin/x", ctx), undefined);
    assert.equal(mountRoot("/home/u/bin/agent", ctx), "/home/u/bin/agent");
    assert.equal(mountRoot("/node_modules/x/bin", { systemDirs: [], hostHome: "/" }), "/node_modules");
    assert.equal(mountRoot("/home/node_modules/x/bin", { systemDirs: [], hostHome: "/home/node_modules" }), "/home/node_modules/x/bin");
  });
});

describe("npm's global prefix", () => {
  test("asked once, then cached until npm or .npmrc changes", () => {
    const dir = join(base, "npm");
    const count = join(dir, "count");
    const npm = executable(join(dir, "bin", "npm"), `#!/bin/sh\necho x >> ${count}\necho /fake/prefix\n`);
    const env = { PATH: dirname(npm), HOME: join(dir, "home") };
    const state = join(dir, "state");
    assert.equal(npmGlobalPrefix(state, env), "/fake/prefix");
    assert.equal(npmGlobalPrefix(state, env), "/fake/prefix");
    assert.equal(readFileSync(count, "utf8"), "x\n");
    mkdirSync(env.HOME, { recursive: true });
    writeFileSync(join(env.HOME, ".npmrc"), "prefix=/elsewhere\n");
    npmGlobalPrefix(state, env);
    assert.equal(readFileSync(count, "utf8"), "x\nx\n");
  });

  test("no npm: no prefix", () => {
    assert.equal(npmGlobalPrefix(join(base, "npm2"), { PATH: join(base, "empty") }), undefined);
  });
});
