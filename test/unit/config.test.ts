import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse as parseYamlPlain } from "yaml";
import { CloisterError } from "../../src/errors.js";
import { createFileAtomic, ensurePrivateDir, writeFileAtomic } from "../../src/config/atomic-write.js";
import { registerResolved, resolveProject, resolveProjectName } from "../../src/config/effective-cache.js";
import { DEFAULT_HOSTEXEC_RULES } from "../../src/config/hostexec-schema.js";
import {
  ConfigError,
  configAsYaml,
  createDefaultConfig,
  effectiveConfig,
  keyPath,
  loadEffectiveConfig,
  loadGlobalConfig,
  loadedTogether,
  loadProjectConfig,
  parseConfigText,
  readGlobalConfig,
  readIfExists,
  validateConfigFile,
} from "../../src/config/load.js";
import { checkAllConfig, formatFileProblem } from "../../src/config/check-all.js";
import { checkSocketRoom, type CloisterPaths, instanceEnv, resolvePaths } from "../../src/config/paths.js";
import {
  knownProject,
  listProjects,
  projectNameFor,
  projectNameForRoot,
  projectRoot,
  sharedPaths,
  registerProject,
  removeProject,
  sanitizeProjectName,
  suffixedProjectName,
} from "../../src/config/project-registry.js";
import { DEFAULT_ALLOW, GlobalConfigSchema, SAFE_NAME_RE, allKeyPaths, envNameProblem, mountDestProblem } from "../../src/config/schema.js";
import { GLOBAL_CONFIG_TEMPLATE } from "../../src/config/template.js";
import {
  formatDuration,
  formatPercent,
  formatSize,
  parseDuration,
  parsePercent,
  parseSize,
  writeSize,
} from "../../src/config/units.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

let scratch = "";
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cloister-config-test-"));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
/** A fresh CLOISTER_HOME instance per test, so tests never see each other's files. */
async function freshPaths(): Promise<CloisterPaths> {
  const home = join(scratch, `home-${++counter}`);
  await mkdir(home);
  return resolvePaths({ CLOISTER_HOME: home });
}

async function freshDir(name = "dir"): Promise<string> {
  const dir = join(scratch, `${name}-${++counter}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

function mode(info: { mode: number }): number {
  return info.mode & 0o777;
}

const FILE = "/cfg/config.yaml";

/** Parse and expect a ConfigError; returns it for further checks. */
function configError(text: string, kind: "global" | "project" = "global"): ConfigError {
  try {
    parseConfigText(text, FILE, kind);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

function defaults() {
  return parseConfigText("", FILE, "global");
}

// ---------------------------------------------------------------------------------------------------
describe("units: parseSize", () => {
  const good: Array<[string | number, number]> = [
    ["8GiB", 8 * GiB],
    ["8gib", 8 * GiB],
    ["8G", 8 * GiB],
    ["8g", 8 * GiB],
    ["8 GiB", 8 * GiB],
    [" 512MiB ", 512 * MiB],
    ["512m", 512 * MiB],
    ["1.5GiB", 1.5 * GiB],
    ["4096", 4096],
    ["4096b", 4096],
    ["1K", 1024],
    ["1KiB", 1024],
    ["1KB", 1000],
    ["1kb", 1000],
    ["2MB", 2_000_000],
    ["1GB", 1e9],
    ["1TiB", 1024 ** 4],
    ["1TB", 1e12],
    ["0", 0],
    ["0GiB", 0],
    ["0.5K", 512],
    [1024, 1024],
    [0, 0],
  ];
  for (const [input, expected] of good) {
    test(`${JSON.stringify(input)} → ${expected}`, () => assert.equal(parseSize(input), expected));
  }

  const bad: Array<[string | number, RegExp]> = [
    ["-1G", /negative/],
    ["-0", /negative/],
    [-5, /negative/],
    ["lots", /not a size/],
    ["", /not a size/],
    ["none", /"none" is not a size/],
    ["8 gigs", /"gigs" is not a size unit/],
    ["8PiB", /not a size unit/],
    ["1e3", /not a size/],
    ["1G1M", /not a size/],
    [".5G", /not a size/],
    ["0x10", /not a size/],
    ["99999999999TiB", /too large/],
    ["9".repeat(400), /too large/],
    [1.5, /whole number/],
    [Number.NaN, /not a size/],
    [Number.POSITIVE_INFINITY, /not a size/],
    [2 ** 60, /too large/],
  ];
  for (const [input, message] of bad) {
    test(`${JSON.stringify(String(input))} is refused`, () => assert.throws(() => parseSize(input), message));
  }
});

describe("units: parseDuration", () => {
  const good: Array<[string, number]> = [
    ["90s", 90_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["1h 30m", 5_400_000],
    ["1H30M", 5_400_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["2d", 172_800_000],
    ["1m30s500ms", 90_500],
    ["0s", 0],
  ];
  for (const [input, expected] of good) {
    test(`${input} → ${expected}`, () => assert.equal(parseDuration(input), expected));
  }

  const bad: Array<[string | number, RegExp]> = [
    ["90", /needs a unit/],
    [90, /needs a unit/],
    ["-5m", /negative/],
    ["5min", /"min" is not a duration unit/],
    ["5y", /not a duration unit/],
    ["soon", /not a duration/],
    ["", /not a duration/],
    ["none", /"none" is not a duration/],
    ["1h-30m", /not a duration/],
    ["h", /not a duration/],
    ["99999999999999999d", /too large/],
  ];
  for (const [input, message] of bad) {
    test(`${JSON.stringify(input)} is refused`, () => assert.throws(() => parseDuration(input), message));
  }
});

describe("units: parsePercent", () => {
  const good: Array<[string, number]> = [
    ["150%", 150],
    ["100%", 100],
    ["50.5%", 50.5],
    [" 200 % ", 200],
    ["0%", 0],
  ];
  for (const [input, expected] of good) {
    test(`${input} → ${expected}`, () => assert.equal(parsePercent(input), expected));
  }

  const bad: Array<[string | number, RegExp]> = [
    ["150", /did you mean 150%\?/],
    [2, /did you mean 2%\?/],
    ["-5%", /negative/],
    ["abc%", /not a percentage/],
    ["%", /not a percentage/],
    ["none", /not a percentage/],
    ["", /not a percentage/],
    ["1e3%", /not a percentage/],
    ["99999999999999999999%", /too large/],
  ];
  for (const [input, message] of bad) {
    test(`${JSON.stringify(input)} is refused`, () => assert.throws(() => parsePercent(input), message));
  }
});

describe("units: formatters", () => {
  test("sizes", () => {
    assert.equal(formatSize(8 * GiB), "8GiB");
    assert.equal(formatSize(1.5 * GiB), "1.5GiB");
    assert.equal(formatSize(512 * MiB), "512MiB");
    assert.equal(formatSize(1024 ** 4), "1TiB");
    assert.equal(formatSize(512), "512B");
    assert.equal(formatSize(0), "0B");
    assert.equal(formatSize(null), "none");
    for (const size of [8 * GiB, 512 * MiB, 3 * 1024, 7]) assert.equal(parseSize(formatSize(size)), size);
  });
  test("durations", () => {
    assert.equal(formatDuration(5_400_000), "1h30m");
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(250), "250ms");
    assert.equal(formatDuration(0), "0s");
    assert.equal(formatDuration(172_800_000 + 1000), "2d1s");
    assert.equal(formatDuration(null), "none");
    for (const ms of [1, 999, 60_000, 5_400_000, 90_061_001]) assert.equal(parseDuration(formatDuration(ms)), ms);
  });
  test("sizes as a config file writes them: exact, in the largest unit that divides them", () => {
    assert.equal(writeSize(8 * GiB), "8GiB");
    assert.equal(writeSize(1.5 * GiB), "1536MiB");
    assert.equal(writeSize(1500), "1500B");
    for (const size of [8 * GiB, 1.5 * GiB, 3 * 1024 + 1, 7, 1024 ** 4 * 3]) assert.equal(parseSize(writeSize(size)), size);
  });
  test("percentages", () => {
    assert.equal(formatPercent(150), "150%");
    assert.equal(formatPercent(50.5), "50.5%");
    assert.equal(formatPercent(null), "none");
  });
});

// ---------------------------------------------------------------------------------------------------
describe("schema: defaults and template", () => {
  test("an empty file is all defaults", () => {
    assert.deepEqual(defaults(), {
      defaults: { shell: "/bin/bash", network: true, agent: null },
      limits: { memory: 8 * GiB, pids: 4096, cpu: null, tmpfs: GiB, timeout: null },
      sandbox: { protect: [], env: [], mounts: [] },
      proxy: {
        allow: [...DEFAULT_ALLOW],
        deny: [],
        resolve: {},
        connect_timeout: 10_000,
        idle_timeout: 600_000,
        max_connections: 1024,
        max_header_size: 32 * 1024,
        max_headers: 100,
        unlisted: "ask",
        approval_timeout: 60_000,
        audit_rate: 50,
        audit_burst: 5000,
        inspect: [],
        upstream_ca: null,
      },
      audit: { max_size: 64 * 1024 * 1024, keep: 10 },
      ui: { port: 9999 },
      hostexec: { rules: [...DEFAULT_HOSTEXEC_RULES], timeout: 300_000, approval_timeout: 300_000, max_output: 16 * 1024 * 1024, rate_limit: 30 },
      agents: {},
    });
  });

  test("a file of comments and blank lines is all defaults", () => {
    assert.deepEqual(parseConfigText("# nothing here\n\n   \n# still nothing\n", FILE, "global"), defaults());
  });

  test("empty sections mean defaults", () => {
    assert.deepEqual(parseConfigText("defaults:\nlimits:\nsandbox:\n  env:\nui:\n", FILE, "global"), defaults());
  });

  test("a project file that is empty is all defaults", () => {
    assert.deepEqual(parseConfigText("", FILE, "project"), {
      refs: {},
      sandbox: { protect: [], env: [], mounts: [] },
      limits: {},
      proxy: { allow: [], deny: [] },
      hostexec: { rules: [] },
    });
  });

  test("parsing the template gives exactly the defaults", () => {
    assert.deepEqual(parseConfigText(GLOBAL_CONFIG_TEMPLATE, FILE, "global"), defaults());
  });

  test("the template spells out every key of the schema, and no other", () => {
    const written = keyPathsOf(parseYamlPlain(GLOBAL_CONFIG_TEMPLATE) as unknown);
    const known = allKeyPaths(GlobalConfigSchema).map((path) => path.join("."));
    assert.deepEqual(written.sort(), known.sort());
  });
});

function keyPathsOf(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return [path, ...keyPathsOf(child, path)];
  });
}

describe("schema: good values", () => {
  test("limits in every accepted form", () => {
    const config = parseConfigText(
      "limits:\n  memory: none\n  pids: NONE\n  cpu: 250%\n  tmpfs: 256m\n  timeout: 1h30m\n",
      FILE,
      "global",
    );
    assert.deepEqual(config.limits, { memory: null, pids: null, cpu: 250, tmpfs: 256 * MiB, timeout: 5_400_000 });
  });

  test("numbers are bytes and process counts; quoted digits are too", () => {
    const config = parseConfigText("limits:\n  memory: 1073741824\n  pids: '128'\n", FILE, "global");
    assert.equal(config.limits.memory, GiB);
    assert.equal(config.limits.pids, 128);
  });

  test("sandbox lists", () => {
    const config = parseConfigText(
      [
        "sandbox:",
        "  protect: [Makefile, scripts/ci/, ./package.json]",
        "  env: [LANG, TERM, GIT_AUTHOR_NAME, _X_OK]",
        "  mounts:",
        "    - {src: /opt/tools, dest: /opt/tools}",
        "    - src: /usr/share/dict",
        "      dest: /dict",
        "",
      ].join("\n"),
      FILE,
      "global",
    );
    assert.deepEqual(config.sandbox, {
      protect: ["Makefile", "scripts/ci/", "./package.json"],
      env: ["LANG", "TERM", "GIT_AUTHOR_NAME", "_X_OK"],
      mounts: [
        { src: "/opt/tools", dest: "/opt/tools" },
        { src: "/usr/share/dict", dest: "/dict" },
      ],
    });
  });

  test("a full project file", () => {
    const config = parseConfigText(
      "path: /home/me/app\nrefs:\n  lib: /home/me/lib\n  docs.v2: /srv/docs\nlimits:\n  memory: 2GiB\n  timeout: none\n",
      FILE,
      "project",
    );
    assert.deepEqual(config, {
      path: "/home/me/app",
      refs: { lib: "/home/me/lib", "docs.v2": "/srv/docs" },
      sandbox: { protect: [], env: [], mounts: [] },
      limits: { memory: 2 * GiB, timeout: null },
      proxy: { allow: [], deny: [] },
      hostexec: { rules: [] },
    });
  });

  test("proxy rules: text, or {rule, private}; written lists replace the built-in allowlist", () => {
    const config = parseConfigText("proxy:\n  allow:\n    - example.com\n    - {rule: 'db.internal:5432', private: true}\n  resolve:\n    API.Test.: 127.0.0.1\n", FILE, "global");
    assert.deepEqual(config.proxy.allow, ["example.com", { rule: "db.internal:5432", private: true }]);
    assert.deepEqual(config.proxy.resolve, { "API.Test.": "127.0.0.1" });
  });

  test("a project adds allow and deny rules only", () => {
    const config = parseConfigText("proxy:\n  allow: [api.example.com]\n  deny: ['*.ads.example.com']\n", FILE, "project");
    assert.deepEqual(config.proxy, { allow: ["api.example.com"], deny: ["*.ads.example.com"] });
    assert.equal(configError("proxy:\n  resolve: {}\n", "project").key, "proxy.resolve");
  });

  test("YAML 1.1 booleans are not booleans: network: no is refused, not read as false", () => {
    const error = configError("defaults:\n  network: no\n");
    assert.equal(error.key, "defaults.network");
    assert.match(error.message, /expected true or false/);
  });
});

describe("schema: a mount's dest", () => {
  test("may be anywhere but the cloister's own places: a name that only begins like one is not one of them", () => {
    for (const dest of ["/data/lib", "/workspace", "/work2", "/tmp/data", "/opt/tools", "/runner", "/devtools", "/home/x/.m2"]) assert.equal(mountDestProblem(dest), undefined, dest);
    for (const dest of ["/work", "/work/", "/work/a/b", "/run", "/run/cloister/init", "/proc", "/dev/null", "/refs"]) assert.ok(mountDestProblem(dest), dest);
  });
});

describe("schema: bad values name file, line, column and key", () => {
  // [yaml, key, line, message pattern]
  const cases: Array<[string, string, number, RegExp]> = [
    ["proxy:\n  allow:\n    - example.com\n    - '*.com'\n", "proxy.allow[1]", 4, /top-level domain/],
    ["proxy:\n  allow:\n    - '*'\n", "proxy.allow[0]", 3, /would allow every host/],
    ["proxy:\n  deny:\n    - '*'\n", "proxy.deny[0]", 3, /would deny every host/],
    ["proxy:\n  deny:\n    - {rule: '*', private: false}\n", "proxy.deny[0].rule", 3, /would deny every host/],
    ["proxy:\n  deny:\n    - 'exa mple.com'\n", "proxy.deny[0]", 3, /space/],
    ["proxy:\n  allow:\n    - example.com:0\n", "proxy.allow[0]", 3, /port/],
    ["proxy:\n  allow:\n    - {rule: 'db.internal:5432', private: maybe}\n", "proxy.allow[0].private", 3, /expected true or false/],
    ["proxy:\n  allow:\n    - {rule: '*.co.uk', private: true}\n", "proxy.allow[0].rule", 3, /public suffix|co\.uk/],
    ["proxy:\n  allow:\n    - {host: example.com}\n", "proxy.allow[0].rule", 3, /expected a rule/],
    ["proxy:\n  allow:\n    - {rule: 'db.internal:5432', privat: true}\n", "proxy.allow[0].privat", 3, /unknown key: a rule mapping has the keys rule and private/],
    ["proxy:\n  resolve:\n    api.test: not-an-ip\n", "proxy.resolve[\"api.test\"]", 3, /not an IP address/],
    ["proxy:\n  resolve:\n    127.0.0.1: 10.0.0.1\n", "proxy.resolve[\"127.0.0.1\"]", 3, /only names can be mapped/],
    ["proxy:\n  max_connections: 0\n", "proxy.max_connections", 2, /from 1 to/],
    ["proxy:\n  connect_timeout: soon\n", "proxy.connect_timeout", 2, /duration|soon/],
    ["proxy:\n  connect_timeout: 0s\n", "proxy.connect_timeout", 2, /a connect timeout must be more than 0$/],
    ["limits:\n  memory: 0\n", "limits.memory", 2, /more than 0 \(use none for no limit\)/],
    ["audit:\n  keep: -1\n", "audit.keep", 2, /whole number/],
    ["defaults:\n  shell: bash\n", "defaults.shell", 2, /not an absolute path/],
    ["defaults:\n  shell: 5\n", "defaults.shell", 2, /expected an absolute path, found the number 5/],
    ["defaults:\n  shell: /bin/../bin/sh\n", "defaults.shell", 2, /contains "\.\."/],
    ["defaults:\n  network: 'true'\n", "defaults.network", 2, /expected true or false, found text "true"/],
    ["defaults:\n  network: 1\n", "defaults.network", 2, /expected true or false/],
    ["defaults: [a]\n", "defaults", 1, /expected a mapping of keys, found a list/],
    ["limits: 5\n", "limits", 1, /expected a mapping of keys, found the number 5/],
    ["limits:\n  memory: 0\n", "limits.memory", 2, /must be more than 0.*none/],
    ["limits:\n  memory: 0GiB\n", "limits.memory", 2, /must be more than 0/],
    ["limits:\n  memory: -1G\n", "limits.memory", 2, /negative/],
    ["limits:\n  memory: lots\n", "limits.memory", 2, /not a size/],
    ["limits:\n  memory: true\n", "limits.memory", 2, /expected a size like 8GiB, or none, found true/],
    ["limits:\n  memory:\n", "limits.memory", 2, /found an empty value/],
    ["limits:\n  memory: [1]\n", "limits.memory", 2, /found a list/],
    ["limits:\n  memory: 99999999999TiB\n", "limits.memory", 2, /too large/],
    ["limits:\n  pids: 0\n", "limits.pids", 2, /not a process count/],
    ["limits:\n  pids: -1\n", "limits.pids", 2, /not a process count/],
    ["limits:\n  pids: 1.5\n", "limits.pids", 2, /not a process count/],
    ["limits:\n  pids: many\n", "limits.pids", 2, /not a process count/],
    ["limits:\n  pids: 99999999999\n", "limits.pids", 2, /more processes than the kernel can have \(4194304\)/],
    ["limits:\n  cpu: 0%\n", "limits.cpu", 2, /must be more than 0/],
    ["limits:\n  cpu: 2\n", "limits.cpu", 2, /did you mean 2%/],
    ["limits:\n  cpu: '-50%'\n", "limits.cpu", 2, /negative/],
    ["limits:\n  tmpfs: none\n", "limits.tmpfs", 2, /cannot be none/],
    ["limits:\n  tmpfs: 0\n", "limits.tmpfs", 2, /more than 0/],
    ["limits:\n  tmpfs: big\n", "limits.tmpfs", 2, /not a size/],
    ["limits:\n  timeout: 0s\n", "limits.timeout", 2, /more than 0/],
    ["limits:\n  timeout: 90\n", "limits.timeout", 2, /needs a unit/],
    ["limits:\n  timeout: 30d\n", "limits.timeout", 2, /at most 24 days/],
    ["limits:\n  timeout: soon\n", "limits.timeout", 2, /not a duration/],
    ["sandbox:\n  protect: Makefile\n", "sandbox.protect", 2, /expected a list of paths/],
    ["sandbox:\n  protect: [/etc/passwd]\n", "sandbox.protect[0]", 2, /is absolute/],
    ["sandbox:\n  protect: [../outside]\n", "sandbox.protect[0]", 2, /stay inside the project/],
    ["sandbox:\n  protect: [a/../../b]\n", "sandbox.protect[0]", 2, /stay inside the project/],
    ["sandbox:\n  protect: ['']\n", "sandbox.protect[0]", 2, /cannot be empty/],
    ["sandbox:\n  protect: [5]\n", "sandbox.protect[0]", 2, /found the number 5/],
    ["sandbox:\n  env: [1ABC]\n", "sandbox.env[0]", 2, /not an environment variable name/],
    ["sandbox:\n  env: [FOO=bar]\n", "sandbox.env[0]", 2, /never values/],
    ["sandbox:\n  env: [GITHUB_TOKEN]\n", "sandbox.env[0]", 2, /guardian/],
    ["sandbox:\n  mounts: [{src: rel, dest: /x}]\n", "sandbox.mounts[0].src", 2, /not an absolute path/],
    ["sandbox:\n  mounts: [{src: /a, dest: /}]\n", "sandbox.mounts[0].dest", 2, /cannot be \//],
    // The cloister's own view (QA: a mount on /work replaced the project; one below it left a mount point in the host's project).
    ["sandbox:\n  mounts: [{src: /a, dest: /work}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/work or below it: the project is there; mount it elsewhere/],
    ["sandbox:\n  mounts: [{src: /a, dest: /work/sub/}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/work or below it/],
    ["sandbox:\n  mounts: [{src: /a, dest: //run/cloister}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/run or below it: the cloister's own plumbing/],
    ["sandbox:\n  mounts: [{src: /a, dest: /proc/1}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/proc or below it/],
    ["sandbox:\n  mounts: [{src: /a, dest: /refs/x}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/refs or below it/],
    ["sandbox:\n  mounts: [{src: /a, dest: /dev/shm}]\n", "sandbox.mounts[0].dest", 2, /cannot be \/dev or below it/],
    ["sandbox:\n  mounts:\n    - src: /a\n", "sandbox.mounts[0].dest", 3, /required key is missing/],
    ["sandbox:\n  mounts: [/a]\n", "sandbox.mounts[0]", 2, /expected a mapping \{src/],
    ["ui: [1]\n", "ui", 1, /expected a mapping/],
  ];
  for (const [yaml, key, line, message] of cases) {
    test(`${key}: ${JSON.stringify(yaml)}`, () => {
      const error = configError(yaml);
      assert.equal(error.file, FILE);
      assert.equal(error.key, key);
      assert.equal(error.line, line);
      assert.match(error.message, message);
      assert.ok(error.message.startsWith(`${FILE}:${line}:${error.column}: ${key}: `), error.message);
    });
  }

  test("the column points at the offending value", () => {
    const error = configError("limits:\n  memory: lots\n");
    assert.equal(error.column, 11);
  });

  test("an empty value is reported at its key", () => {
    const error = configError("limits:\n  memory:\n");
    assert.deepEqual([error.line, error.column], [2, 3]);
  });

  test("project files: path, refs and limits", () => {
    const cases: Array<[string, string, number, RegExp]> = [
      ["path: relative/dir\n", "path", 1, /not an absolute path/],
      ["refs:\n  My.Ref: /x\n", 'refs["My.Ref"]', 2, /not a valid ref name/],
      ["refs:\n  _lib: /x\n", "refs._lib", 2, /not a valid ref name/],
      ["refs:\n  lib: relative\n", "refs.lib", 2, /not an absolute path/],
      ["refs: [a]\n", "refs", 1, /expected a mapping of ref names/],
      ["limits:\n  memory: 0\n", "limits.memory", 2, /more than 0/],
    ];
    for (const [yaml, key, line, message] of cases) {
      const error = configError(yaml, "project");
      assert.equal(error.key, key, yaml);
      assert.equal(error.line, line, yaml);
      assert.match(error.message, message);
    }
  });

  test("a bad ref name is reported at the key, not the value", () => {
    const error = configError("refs:\n  ok: /a\n  'Bad Name': /b\n", "project");
    assert.deepEqual([error.line, error.column], [3, 3]);
  });

  test("a ref name longer than 63 characters is refused", () => {
    const error = configError(`refs:\n  ${"a".repeat(64)}: /x\n`, "project");
    assert.match(error.message, /at most 63/);
  });

  test("every problem is collected, in file order", () => {
    const error = configError("sandbox:\n  env: [SECRET_X]\nlimits:\n  pids: 0\ndefaults:\n  shell: sh\n");
    assert.deepEqual(
      error.problems.map((p) => [p.line, p.key]),
      [
        [2, "sandbox.env[0]"],
        [4, "limits.pids"],
        [6, "defaults.shell"],
      ],
    );
    assert.equal(error.line, 2);
  });

  test("ConfigError is a CloisterError with a one-line form", () => {
    const error = configError("limit: {}\n");
    assert.ok(error instanceof CloisterError);
    assert.equal(error.oneLine(), `${FILE}:1:1: limit: unknown key (did you mean "limits"?)`);
    assert.deepEqual(error.terminalLines(), [error.oneLine()]);
  });

  test("the CLI's lines for a ConfigError of several problems list each, with its hint, under a heading (QA: a launch named only the first)", () => {
    const error = configError("limits:\n  memroy: 1G\n  pids: many\n");
    assert.deepEqual(error.terminalLines(), [
      `2 problems in ${FILE} (fix each; \`cloister config validate\` checks them all again):`,
      `  ${FILE}:2:3: limits.memroy: unknown key (did you mean "memory"?)`,
      `  ${FILE}:3:9: limits.pids: ${error.problems[1]?.problem}`,
    ]);
    assert.deepEqual(new CloisterError("it failed", "do this").terminalLines(), ["it failed (do this)"]);
  });

  test("on one line (a warning, the guardian's log), a ConfigError names every problem: summary() without hints, oneLine() with them", () => {
    const error = configError("limits:\n  memroy: 1G\n  pids: many\n");
    const pids = `${FILE}:3:9: limits.pids: ${error.problems[1]?.problem}`;
    assert.equal(error.summary(), `2 problems in ${FILE}: ${FILE}:2:3: limits.memroy: unknown key; ${pids}`);
    assert.equal(error.oneLine(), `2 problems in ${FILE}: ${FILE}:2:3: limits.memroy: unknown key (did you mean "memory"?); ${pids}`);
    const refused = new ConfigError(error.problems, { lead: "the rule was not saved", hint: "fix the files first" });
    assert.equal(refused.oneLine(), `the rule was not saved: ${error.oneLine()} (fix the files first)`);
    const single = configError("limit: {}\n");
    assert.equal(single.summary(), single.message);
  });
});

describe("unknown keys", () => {
  test("at the top level, with a suggestion", () => {
    const error = configError("defaults:\n  shell: /bin/sh\nlimts:\n  memory: 1G\n");
    assert.equal(error.message, `${FILE}:3:1: limts: unknown key`);
    assert.equal(error.hint, 'did you mean "limits"?');
    assert.deepEqual([error.file, error.line, error.column, error.key], [FILE, 3, 1, "limts"]);
  });

  test("nested, with a suggestion", () => {
    const error = configError("limits:\n  memory: 1G\n  memroy: 2G\n");
    assert.equal(error.message, `${FILE}:3:3: limits.memroy: unknown key`);
    assert.equal(error.hint, 'did you mean "memory"?');
  });

  test("inside a list item", () => {
    const error = configError("sandbox:\n  mounts:\n    - src: /a\n      dst: /b\n");
    const unknown = error.problems.find((p) => p.key === "sandbox.mounts[0].dst");
    assert.ok(unknown);
    assert.deepEqual([unknown.line, unknown.column, unknown.hint], [4, 7, 'did you mean "dest"?']);
  });

  test("in a flow mapping the column is the key's", () => {
    const error = configError("defaults: {shell: /bin/sh, netwrk: false}\n");
    assert.deepEqual([error.line, error.column, error.key], [1, 28, "defaults.netwrk"]);
    assert.equal(error.hint, 'did you mean "network"?');
  });

  test("a key at the wrong level points to where it belongs", () => {
    const error = configError("memory: 4GiB\n");
    assert.equal(error.key, "memory");
    assert.equal(error.hint, 'did you mean "limits.memory"?');
  });

  test("a key nothing like any valid key lists the valid keys", () => {
    const error = configError("zzzzzzzz: 1\n");
    assert.equal(error.hint, "valid keys here: defaults, limits, sandbox, proxy, audit, ui, hostexec, agents");
  });

  test("an unknown ui key names the valid ones", () => {
    const error = configError("ui:\n  theme: dark\n");
    assert.deepEqual([error.line, error.column, error.key], [2, 3, "ui.theme"]);
    assert.equal(error.hint, "valid keys here: port");
  });

  test("approval settings: unlisted is ask or deny, timeouts and ports are checked", () => {
    assert.equal(parseConfigText("proxy:\n  unlisted: deny\n  approval_timeout: 5m\n", FILE, "global").proxy.approval_timeout, 300_000);
    const unlisted = configError("proxy:\n  unlisted: maybe\n");
    assert.deepEqual([unlisted.line, unlisted.key], [2, "proxy.unlisted"]);
    assert.match(unlisted.message, /expected ask or deny, found text "maybe"/);
    assert.match(configError("proxy:\n  approval_timeout: 0s\n").message, /approval timeout must be more than 0/);
    assert.match(configError("proxy:\n  approval_timeout: 30d\n").message, /at most 24 days/);
    assert.match(configError("ui:\n  port: 70000\n").message, /whole number from 0 to 65535/);
    assert.equal(parseConfigText("ui:\n  port: 0\n", FILE, "global").ui.port, 0);
  });

  test("project files suggest project keys", () => {
    const error = configError("ref:\n  lib: /x\n", "project");
    assert.equal(error.hint, 'did you mean "refs"?');
    const nested = configError("sandbox:\n  protcet: [a]\n", "project");
    assert.equal(nested.hint, 'did you mean "protect"?');
  });

  test("global-only keys are unknown in a project file", () => {
    const error = configError("defaults:\n  shell: /bin/sh\n", "project");
    assert.equal(error.key, "defaults");
  });

  test("keyPath quotes keys that are not plain identifiers", () => {
    assert.equal(keyPath(["sandbox", "mounts", 0, "src"]), "sandbox.mounts[0].src");
    assert.equal(keyPath(["refs", "a.b"]), 'refs["a.b"]');
    assert.equal(keyPath([]), "");
  });
});

describe("YAML problems", () => {
  test("a syntax error reports file, line and column", () => {
    const error = configError("limits:\n  memory: 8GiB\n    pids: 5\n");
    assert.equal(error.line, 2);
    assert.equal(error.column, 11);
    assert.equal(error.key, "");
    assert.match(error.message, /^\/cfg\/config\.yaml:2:11: invalid YAML: /);
  });

  test("a YAML tag is refused with its key: !!omap made a section read as empty, its deny rules and unknown keys gone", () => {
    const omap = configError("proxy: !!omap\n  - deny: [registry.npmjs.org]\n  - bogus_key: 1\n");
    assert.equal(omap.key, "proxy");
    assert.match(omap.message, /YAML tags such as !!omap are not used in cloister's config files/);
    assert.equal(configError("proxy:\n  allow: [a.example.com, !custom b.example.com]\n").key, "proxy.allow[1]");
    assert.equal(configError("limits:\n  memory: !!str 8GiB\n").key, "limits.memory");
  });

  test("an error in a flow mapping", () => {
    const error = configError("defaults: {shell: /bin/sh,, network: true}\n");
    assert.deepEqual([error.line, error.column], [1, 27]);
  });

  test("tabs as indentation", () => {
    const error = configError("limits:\n  memory: 8GiB\n\tpids: 4\n");
    assert.equal(error.line, 3);
    assert.match(error.message, /invalid YAML/);
  });

  test("duplicate keys are an error at the second one", () => {
    const error = configError("limits: {}\nlimits: {}\n");
    assert.deepEqual([error.line, error.column], [2, 1]);
    assert.match(error.message, /unique \("limits" is given twice\)/);
    assert.match(configError("limits:\n  memory: 8GiB\n  memory: 4GiB\n").message, /:3:3: .*\("memory" is given twice\)/);
  });

  test("a long text where a mapping belongs is cut in the message, which stays one line", () => {
    const error = configError(`defaults: ${JSON.stringify("root:x:0:0:root:/root:/bin/bash ".repeat(20))}\n`);
    assert.ok(error.message.length < 250, error.message);
    assert.match(error.message, /found text "root:x:0:0.*\.\.\."$/);
  });

  test("a FIFO or a device in a config file's place is refused, not read (a read would hang or fill memory)", async () => {
    const fifo = join(scratch, "config-fifo.yaml");
    execFileSync("mkfifo", [fifo]);
    await assert.rejects(readIfExists(fifo), /config-fifo\.yaml is not a regular file/);
    await assert.rejects(readIfExists("/dev/zero"), /is not a regular file/);
  });

  test("several documents in one file are refused", () => {
    const error = configError("limits: {}\n---\nui: {}\n");
    assert.match(error.message, /invalid YAML/);
  });

  test("a file that is a list, a string or a number is refused", () => {
    assert.match(configError("- a\n- b\n").message, /^\/cfg\/config\.yaml:1:1: the file must be a mapping of keys .*found a list$/);
    assert.match(configError("hello\n").message, /found text "hello"/);
    const number = configError("\n\n42\n");
    assert.deepEqual([number.line, number.column], [3, 1]);
  });

  test("alias bombs are refused", () => {
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++) {
      const refs = Array.from({ length: 10 }, () => `*${String.fromCharCode(96 + i)}`).join(", ");
      lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${refs}]`);
    }
    const error = configError(`${lines.join("\n")}\n`);
    assert.match(error.message, /invalid YAML: Excessive alias count/);
  });
});

describe("env names", () => {
  const refused = [
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "NPM_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_REGION",
    "aws_profile",
    "SSH_AUTH_SOCK",
    "DB_PASSWORD",
    "MYSQL_PASSWD",
    "my_secret",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GPG_PASSPHRASE",
    "DATABASE_URL",
    "SESSION_COOKIE",
    "TLS_PRIVATE",
  ];
  for (const name of refused) {
    test(`${name} is refused, pointing at the guardian`, () => {
      const problem = envNameProblem(name);
      assert.ok(problem);
      assert.match(problem, /guardian/);
    });
  }

  test("names cloister sets itself are refused for that reason", () => {
    for (const name of ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "no_proxy", "CLOISTER_HOME"]) {
      assert.match(envNameProblem(name) ?? "", /set by cloister/, name);
    }
  });

  test("ordinary names pass", () => {
    for (const name of ["LANG", "TERM", "LC_ALL", "EDITOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "_X", "TZ", "PAGER"]) {
      assert.equal(envNameProblem(name), undefined, name);
    }
  });

  test("malformed names are refused", () => {
    for (const name of ["", "1X", "A-B", "A B", "A=B", "ÄRGER"]) {
      assert.match(envNameProblem(name) ?? "", /not an environment variable name/, name);
    }
  });

  test("a refusal in a config file says why", () => {
    const error = configError("sandbox:\n  env:\n    - LANG\n    - AWS_SECRET_ACCESS_KEY\n");
    assert.deepEqual([error.line, error.column, error.key], [4, 7, "sandbox.env[1]"]);
    assert.match(error.message, /secrets never pass into a sandbox through its environment/);
  });

  test("a refused secret name points to what passes a secret instead: the vault with --secret, or cloister setup (QA: \"will come later\")", () => {
    const problem = envNameProblem("GITHUB_TOKEN") ?? "";
    assert.match(problem, /cloister secret set SECRET --host HOST --header "Authorization: Bearer \{\}"\) and start the cloister with --secret GITHUB_TOKEN=SECRET/);
    assert.match(problem, /cloister setup AGENT \(docs\/secrets\.md\)$/);
    assert.doesNotMatch(problem, /later/);
  });
});

describe("config as its files would say it (config show)", () => {
  test("units and none come back, and the output reads back to the same configuration", () => {
    const text = [
      "defaults: {agent: claude}",
      "limits: {memory: 1536MiB, pids: none, cpu: 33.25%, tmpfs: 3000, timeout: 1h30m}",
      "proxy: {connect_timeout: 2500ms, idle_timeout: 10m, max_header_size: 48KiB, approval_timeout: 2m}",
      "audit: {max_size: 1GiB}",
      "hostexec: {timeout: 90s, max_output: 1MiB}",
      "",
    ].join("\n");
    for (const config of [defaults(), parseConfigText(text, FILE, "global")]) {
      const yaml = configAsYaml(config);
      assert.deepEqual(parseConfigText(yaml, FILE, "global"), config, yaml);
    }
    const written = parseYamlPlain(configAsYaml(parseConfigText(text, FILE, "global"))) as Record<string, Record<string, unknown>>;
    assert.deepEqual(written.limits, { memory: "1536MiB", pids: "none", cpu: "33.25%", tmpfs: "3000B", timeout: "1h30m" });
    assert.equal(written.defaults?.agent, "claude");
    assert.equal(written.proxy?.connect_timeout, "2s500ms");
    assert.equal(written.proxy?.max_header_size, "48KiB");
    assert.equal(written.audit?.max_size, "1GiB");
    assert.deepEqual([written.hostexec?.timeout, written.hostexec?.max_output], ["1m30s", "1MiB"]);
    assert.equal((parseYamlPlain(configAsYaml(defaults())) as Record<string, Record<string, unknown>>).defaults?.agent, "none");
  });

  test("a project's effective configuration prints its refs as they are", () => {
    const effective = effectiveConfig(defaults(), parseConfigText("refs: {lib: /srv/lib}\nlimits: {memory: 2GiB}\n", FILE, "project"));
    const written = parseYamlPlain(configAsYaml(effective)) as Record<string, Record<string, unknown>>;
    assert.deepEqual(written.refs, { lib: "/srv/lib" });
    assert.equal(written.limits?.memory, "2GiB");
  });
});

describe("effectiveConfig", () => {
  test("project limits override global ones, including switching one off", () => {
    const global = parseConfigText("limits:\n  memory: 4GiB\n  cpu: 200%\n", FILE, "global");
    const project = parseConfigText("limits:\n  memory: 1GiB\n  cpu: none\n  timeout: 5m\n", FILE, "project");
    const effective = effectiveConfig(global, project);
    assert.deepEqual(effective.limits, { memory: GiB, pids: 4096, cpu: null, tmpfs: GiB, timeout: 300_000 });
    assert.equal(global.limits.memory, 4 * GiB, "inputs are not modified");
  });

  test("lists are joined; mounts on the same dest take the project's", () => {
    const global = parseConfigText(
      "sandbox:\n  protect: [Makefile]\n  env: [LANG, TERM]\n  mounts: [{src: /g1, dest: /a}, {src: /g2, dest: /b}]\n",
      FILE,
      "global",
    );
    const project = parseConfigText(
      "refs: {lib: /srv/lib}\nsandbox:\n  protect: [ci/, Makefile]\n  env: [TERM, TZ]\n  mounts: [{src: /p1, dest: /b}, {src: /p2, dest: /c}]\n",
      FILE,
      "project",
    );
    const effective = effectiveConfig(global, project);
    assert.deepEqual(effective.sandbox, {
      protect: ["Makefile", "ci/"],
      env: ["LANG", "TERM", "TZ"],
      mounts: [
        { src: "/g1", dest: "/a" },
        { src: "/p1", dest: "/b" },
        { src: "/p2", dest: "/c" },
      ],
    });
    assert.deepEqual(effective.refs, { lib: "/srv/lib" });
    assert.deepEqual(effective.defaults, { shell: "/bin/bash", network: true, agent: null });
    assert.deepEqual(effective.ui, { port: 9999 });
  });

  test("an empty project changes nothing", () => {
    const global = defaults();
    const effective = effectiveConfig(global, parseConfigText("", FILE, "project"));
    assert.deepEqual(effective.limits, global.limits);
    assert.deepEqual(effective.sandbox, global.sandbox);
  });
});

// ---------------------------------------------------------------------------------------------------
describe("loading files", () => {
  test("the global config is created from the template on first use, 0600 in a 0700 dir", async () => {
    const paths = await freshPaths();
    const config = await loadGlobalConfig(paths);
    assert.deepEqual(config, defaults());
    assert.equal(await readFile(paths.globalConfigFile, "utf8"), GLOBAL_CONFIG_TEMPLATE);
    assert.equal(mode(await stat(paths.globalConfigFile)), 0o600);
    assert.equal(mode(await stat(paths.configDir)), 0o700);
    assert.deepEqual(await readdir(paths.configDir), ["config.yaml"]);
  });

  test("an existing global config is read, never replaced", async () => {
    const paths = await freshPaths();
    await mkdir(paths.configDir, { recursive: true });
    await writeFile(paths.globalConfigFile, "limits:\n  pids: 100\n");
    const config = await loadGlobalConfig(paths);
    assert.equal(config.limits.pids, 100);
    assert.equal(await readFile(paths.globalConfigFile, "utf8"), "limits:\n  pids: 100\n");
  });

  test("reading the global config for a command that only shows it writes nothing: without a file, the template's settings (QA)", async () => {
    const paths = await freshPaths();
    assert.deepEqual(await readGlobalConfig(paths), { config: defaults(), exists: false });
    assert.deepEqual(await readdir(dirname(paths.configDir)), [], "nothing was created");
    await mkdir(paths.configDir, { recursive: true });
    await writeFile(paths.globalConfigFile, "limits:\n  pids: 100\n");
    const { config, exists } = await readGlobalConfig(paths);
    assert.deepEqual([config.limits.pids, exists], [100, true]);
  });

  test("the default config is written only where there is none, saying whether it was", async () => {
    const paths = await freshPaths();
    assert.equal(await createDefaultConfig(paths), true);
    assert.equal(await readFile(paths.globalConfigFile, "utf8"), GLOBAL_CONFIG_TEMPLATE);
    await writeFile(paths.globalConfigFile, "limits:\n  pids: 100\n");
    assert.equal(await createDefaultConfig(paths), false);
    assert.equal(await readFile(paths.globalConfigFile, "utf8"), "limits:\n  pids: 100\n");
  });

  test("the effective config of a project names every problem of both files in one ConfigError, global first (QA: a launch named the first only)", async () => {
    const paths = await freshPaths();
    await mkdir(paths.projectConfigDir, { recursive: true });
    await writeFile(paths.globalConfigFile, "limits:\n  memroy: 1G\n  pidz: 9\n");
    const projectFile = join(paths.projectConfigDir, "app.yaml");
    await writeFile(projectFile, "proxy:\n  deny: ['*']\n");
    await assert.rejects(loadEffectiveConfig(paths, "app"), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => [p.file, p.key]), [[paths.globalConfigFile, "limits.memroy"], [paths.globalConfigFile, "limits.pidz"], [projectFile, "proxy.deny[0]"]]);
      assert.match(error.terminalLines()[0] ?? "", /^3 problems in 2 config files /);
      return true;
    });
    await writeFile(paths.globalConfigFile, "limits:\n  pids: 9\n");
    await assert.rejects(loadEffectiveConfig(paths, "app"), (error: unknown) => error instanceof ConfigError && error.problems.length === 1 && error.file === projectFile);
    await writeFile(projectFile, "limits:\n  pids: 7\n");
    assert.equal((await loadEffectiveConfig(paths, "app")).limits.pids, 7);
  });

  test("loadedTogether: every ConfigError's problems in one, file by file in the order given; another failure is thrown as it is; else the results in order", async () => {
    const wrong = (file: string, line: number): Promise<never> => Promise.reject(new ConfigError([{ file, line, column: 1, key: "k", problem: "wrong" }]));
    await assert.rejects(loadedTogether([wrong("/b.yaml", 1), Promise.resolve(1), wrong("/a.yaml", 9)]), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => [p.file, p.line]), [["/b.yaml", 1], ["/a.yaml", 9]]);
      return true;
    });
    const unreadable = new CloisterError("/c.yaml is not a regular file", "a config file must be a plain file");
    await assert.rejects(loadedTogether([wrong("/a.yaml", 1), Promise.reject(unreadable)]), (error: unknown) => error === unreadable);
    assert.deepEqual(await loadedTogether([Promise.resolve("global"), undefined, Promise.resolve(2)]), ["global", undefined, 2]);
  });

  test("a launch's config names the global file's problems with a YAML syntax error in the project file, file by file (QA: only the project file's)", async () => {
    const paths = await freshPaths();
    await mkdir(paths.projectConfigDir, { recursive: true });
    await writeFile(paths.globalConfigFile, "limits:\n  memroy: 1G\n");
    const root = await freshDir("app");
    const projectFile = join(paths.projectConfigDir, `${basename(root)}.yaml`);
    await writeFile(projectFile, "limits:\n  pids: 3\nlimits:\n  memory: 1G\n");
    await assert.rejects(resolveProject(paths, root), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => [p.file, p.line, p.column, p.key]), [[paths.globalConfigFile, 2, 3, "limits.memroy"], [projectFile, 3, 1, ""]]);
      assert.match(error.problems[1]?.problem ?? "", /^invalid YAML: .*\("limits" is given twice\)$/);
      return true;
    });
  });

  test("errors name the real file", async () => {
    const paths = await freshPaths();
    await mkdir(paths.configDir, { recursive: true });
    await writeFile(paths.globalConfigFile, "limits:\n  pidz: 100\n");
    await assert.rejects(loadGlobalConfig(paths), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.message, `${paths.globalConfigFile}:2:3: limits.pidz: unknown key`);
      return true;
    });
  });

  test("a missing project file means defaults and is not created", async () => {
    const paths = await freshPaths();
    const config = await loadProjectConfig(paths, "app");
    assert.deepEqual(config, parseConfigText("", FILE, "project"));
    await assert.rejects(stat(join(paths.projectConfigDir, "app.yaml")), { code: "ENOENT" });
  });

  test("a project file is read and validated", async () => {
    const paths = await freshPaths();
    await mkdir(paths.projectConfigDir, { recursive: true });
    await writeFile(join(paths.projectConfigDir, "app.yaml"), "path: /src/app\nlimits: {pids: 10}\n");
    const config = await loadProjectConfig(paths, "app");
    assert.equal(config.path, "/src/app");
    assert.equal(config.limits.pids, 10);
    await writeFile(join(paths.projectConfigDir, "bad.yaml"), "limits: {pidz: 10}\n");
    await assert.rejects(loadProjectConfig(paths, "bad"), /bad\.yaml:1:10: limits\.pidz: unknown key/);
  });

  test("project names that could escape the projects dir are refused", async () => {
    const paths = await freshPaths();
    for (const name of ["../config", "a/b", "", "UPPER", ".hidden"]) {
      await assert.rejects(loadProjectConfig(paths, name), CloisterError, name);
    }
  });

  test("validateConfigFile checks one file of either kind", async () => {
    const dir = await freshDir();
    const file = join(dir, "x.yaml");
    await writeFile(file, "refs: {lib: /x}\n");
    assert.deepEqual((await validateConfigFile(file, "project")).refs, { lib: "/x" });
    await assert.rejects(validateConfigFile(file, "global"), /x\.yaml:1:1: refs: unknown key/);
    await assert.rejects(validateConfigFile(join(dir, "missing.yaml"), "global"), /does not exist/);
  });
});

describe("atomic writes", () => {
  test("writes the content with mode 0600 and leaves no temp file", async () => {
    const dir = await freshDir();
    const file = join(dir, "f.yaml");
    await writeFileAtomic(file, "one\n");
    await writeFileAtomic(file, "two\n");
    assert.equal(await readFile(file, "utf8"), "two\n");
    assert.equal(mode(await stat(file)), 0o600);
    assert.deepEqual(await readdir(dir), ["f.yaml"]);
  });

  test("the requested mode wins over the umask and over the old file's mode", async () => {
    const dir = await freshDir();
    const file = join(dir, "f");
    await writeFile(file, "old", { mode: 0o666 });
    await chmod(file, 0o666);
    const previous = process.umask(0o077);
    try {
      await writeFileAtomic(file, new TextEncoder().encode("new"), 0o644);
    } finally {
      process.umask(previous);
    }
    assert.equal(mode(await stat(file)), 0o644);
    assert.equal(await readFile(file, "utf8"), "new");
  });

  test("a failed write leaves the directory as it was", async () => {
    const dir = await freshDir();
    await mkdir(join(dir, "target-is-a-dir"));
    await assert.rejects(writeFileAtomic(join(dir, "target-is-a-dir"), "x"));
    assert.deepEqual(await readdir(dir), ["target-is-a-dir"]);
    await assert.rejects(writeFileAtomic(join(dir, "no-such-dir", "f"), "x"), { code: "ENOENT" });
  });

  test("createFileAtomic never replaces an existing file", async () => {
    const dir = await freshDir();
    const file = join(dir, "f");
    assert.equal(await createFileAtomic(file, "first"), true);
    assert.equal(await createFileAtomic(file, "second"), false);
    assert.equal(await readFile(file, "utf8"), "first");
    assert.equal(mode(await stat(file)), 0o600);
    assert.deepEqual(await readdir(dir), ["f"]);
  });

  test("ensurePrivateDir creates nested dirs 0700 and tightens a loose one", async () => {
    const dir = await freshDir();
    const nested = join(dir, "a", "b");
    ensurePrivateDir(nested);
    assert.equal(mode(await stat(nested)), 0o700);
    assert.equal(mode(await stat(join(dir, "a"))), 0o700);
    await chmod(nested, 0o755);
    ensurePrivateDir(nested);
    assert.equal(mode(await stat(nested)), 0o700);
  });

  test("ensurePrivateDir refuses a file in the way", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, "file"), "");
    assert.throws(() => ensurePrivateDir(join(dir, "file")), { code: "EEXIST" });
  });
});

// ---------------------------------------------------------------------------------------------------
describe("instance paths: the environment that names them (instanceEnv)", () => {
  const env = { HOME: "/home/u", PATH: "/usr/bin", XDG_RUNTIME_DIR: "/run/user/1000" };

  test("keeps an environment that already names the paths, untouched", () => {
    assert.equal(instanceEnv(resolvePaths(env), env), env);
    const instance = { ...env, CLOISTER_HOME: "/tmp/inst" };
    assert.equal(instanceEnv(resolvePaths(instance), instance), instance);
  });

  test("sets CLOISTER_HOME for the paths of an instance the environment does not name", () => {
    const paths = resolvePaths({ CLOISTER_HOME: "/tmp/other" });
    const made = instanceEnv(paths, env);
    assert.equal(made.CLOISTER_HOME, "/tmp/other");
    assert.equal(made.PATH, "/usr/bin");
    assert.deepEqual(resolvePaths(made), paths);
  });

  test("sets the XDG variables (and drops CLOISTER_HOME) for XDG paths under another environment", () => {
    const paths = resolvePaths({ HOME: "/home/v", XDG_STATE_HOME: "/var/state" });
    const made = instanceEnv(paths, { ...env, CLOISTER_HOME: "/tmp/inst" });
    assert.equal(made.CLOISTER_HOME, undefined);
    assert.deepEqual(resolvePaths(made), paths);
  });

  test("a relative CLOISTER_HOME is refused, naming it and the absolute path to give (QA: it depended on the directory); a relative XDG variable is ignored", () => {
    assert.throws(
      () => resolvePaths({ CLOISTER_HOME: "rel-home" }),
      (error: unknown) =>
        error instanceof CloisterError &&
        error.oneLine() === `CLOISTER_HOME="rel-home" is a relative path, which would name another instance in each directory (give an absolute path, e.g. CLOISTER_HOME=${join(process.cwd(), "rel-home")})`,
    );
    assert.throws(() => resolvePaths({ CLOISTER_HOME: "./x" }), /CLOISTER_HOME="\.\/x" is a relative path/);
    assert.equal(resolvePaths({ CLOISTER_HOME: "/tmp/inst/" }).configDir, "/tmp/inst/config", "an absolute one is taken, normalized");
    assert.equal(resolvePaths({ HOME: "/home/u", XDG_CONFIG_HOME: "relative/config" }).configDir, "/home/u/.config/cloister");
  });

  test("the paths of an instance still find their environment when the process's CLOISTER_HOME is relative", () => {
    const paths = resolvePaths({ CLOISTER_HOME: "/tmp/other" });
    assert.equal(instanceEnv(paths, { ...env, CLOISTER_HOME: "rel-home" }).CLOISTER_HOME, "/tmp/other");
  });

  test("an instance whose runtime dir leaves no room for its unix sockets is refused up front, saying by how much", () => {
    const fits = "/tmp/" + "x".repeat(107 - "/tmp/".length - "/run/c/01234567/guardian/handover.sock".length);
    assert.doesNotThrow(() => checkSocketRoom(resolvePaths({ CLOISTER_HOME: fits })));
    assert.throws(() => checkSocketRoom(resolvePaths({ CLOISTER_HOME: `${fits}yz` })), /runtime directory .* is 2 bytes too long for the unix sockets cloister makes in it \(at most 107 bytes each\)/);
  });

  test("refuses paths no environment gives, naming where", () => {
    const paths = { ...resolvePaths({ CLOISTER_HOME: "/tmp/x" }), stateDir: "/elsewhere/state" };
    assert.throws(() => instanceEnv(paths, env), /no environment gives these cloister paths \(config in \/tmp\/x\/config\)/);
  });
});

describe("project names", () => {
  const cases: Array<[string, string]> = [
    ["myapp", "myapp"],
    ["My Project", "my-project"],
    ["a   b", "a-b"],
    ["a\nb", "a-b"],
    ["line\r\nbreak\t", "line-break"],
    ["Café Ünïcode", "cafe-unicode"],
    ["日本語", "project"],
    ["résumé-日本", "resume"],
    ["v1.2.3", "v1.2.3"],
    ["..hidden.", "hidden"],
    ["--x--", "x"],
    ["___x_", "x_"],
    ["a_b-c.d", "a_b-c.d"],
    ["a/b\\c", "a-b-c"],
    ["", "project"],
    ["...", "project"],
    ["UPPER", "upper"],
  ];
  for (const [raw, expected] of cases) {
    test(`${JSON.stringify(raw)} → ${expected}`, () => {
      assert.equal(sanitizeProjectName(raw), expected);
      assert.match(expected, SAFE_NAME_RE);
    });
  }

  test("very long names are cut to 63 without a trailing separator", () => {
    const name = sanitizeProjectName("x".repeat(62) + "-" + "y".repeat(20));
    assert.equal(name, "x".repeat(62));
    assert.equal(sanitizeProjectName("z".repeat(200)), "z".repeat(63));
  });

  test("every sanitized name is a safe identifier", () => {
    const samples = ["🙂🙂", " .a", "-_-", "a".repeat(300), "Ⅻ roman", "ﬁle", "x.y.", "ÅNGSTRÖM", "\u0000nul"];
    for (const raw of samples) assert.match(sanitizeProjectName(raw), SAFE_NAME_RE, JSON.stringify(raw));
  });

  test("clash suffix: first 6 hex of sha256(path), still at most 63", () => {
    const hash = createHash("sha256").update("/srv/app").digest("hex").slice(0, 6);
    assert.equal(suffixedProjectName("app", "/srv/app"), `app-${hash}`);
    const long = suffixedProjectName("a".repeat(63), "/srv/app");
    assert.equal(long.length, 63);
    assert.match(long, SAFE_NAME_RE);
    assert.match(suffixedProjectName(`${"b".repeat(55)}.-x`, "/p"), /^b{55}-[0-9a-f]{6}$/);
  });
});

describe("project registry", () => {
  function gitInit(dir: string): void {
    execFileSync("git", ["init", "-q", dir], { stdio: "ignore" });
  }

  test("the name comes from the git toplevel, from any subdirectory", async () => {
    const paths = await freshPaths();
    const repo = join(await freshDir("repos"), "My Repo");
    await mkdir(join(repo, "src", "deep"), { recursive: true });
    gitInit(repo);
    const identity = await projectNameFor(join(repo, "src", "deep"), paths);
    assert.deepEqual(identity, { name: "my-repo", path: await realpath(repo), registered: false });
  });

  test("a --project is a registered name, or a directory in a registered project or a git repository; nothing else, / least of all (QA)", async () => {
    const paths = await freshPaths();
    const repo = join(await freshDir("known"), "repo");
    await mkdir(join(repo, "src"), { recursive: true });
    gitInit(repo);
    const plain = join(await freshDir("known"), "plain");
    await mkdir(plain);
    assert.equal(await knownProject(paths, join(repo, "src")), "repo", "a git repository, registered or not");
    for (const given of ["/", plain, join(plain, "missing"), "repo", "no such name"]) assert.equal(await knownProject(paths, given), undefined, given);
    await registerProject(paths, "plain", await realpath(plain));
    assert.equal(await knownProject(paths, plain), "plain");
    assert.equal(await knownProject(paths, "plain"), "plain");
  });

  test("outside git, the directory itself names the project", async () => {
    const paths = await freshPaths();
    const dir = join(await freshDir("plain"), "Plain Dir");
    await mkdir(dir);
    assert.deepEqual(await projectNameFor(dir, paths), { name: "plain-dir", path: await realpath(dir), registered: false });
  });

  test("a path written by hand with a trailing slash, ./ or through a symlink still names its project", async () => {
    const paths = await freshPaths();
    const dir = await freshDir("spelled");
    const repo = join(dir, "repo");
    await mkdir(repo);
    execFileSync("ln", ["-s", repo, join(dir, "link")]);
    await mkdir(paths.projectConfigDir, { recursive: true });
    const root = await realpath(repo);
    for (const written of [`${repo}/`, `${dir}/./repo`, join(dir, "link")]) {
      await writeFile(join(paths.projectConfigDir, "mine.yaml"), `path: ${written}\n`);
      assert.deepEqual(await projectNameForRoot(root, paths), { name: "mine", path: root, registered: true }, written);
    }
  });

  test("a project file that is a symlink to a missing file is named as in the way, not retried forever", async () => {
    const paths = await freshPaths();
    await mkdir(paths.projectConfigDir, { recursive: true });
    const file = join(paths.projectConfigDir, "dangling.yaml");
    execFileSync("ln", ["-s", join(paths.projectConfigDir, "missing-target.yaml"), file]);
    await assert.rejects(registerProject(paths, "dangling", await freshDir("dangling-repo")), /dangling\.yaml is in the way: nothing can be read there, and no file made/);
  });

  test("project files that claim one directory are named, with the one that is used", async () => {
    const paths = await freshPaths();
    const dir = await freshDir("shared");
    await registerProject(paths, "ph", dir);
    await registerProject(paths, "other", join(dir, "elsewhere"));
    assert.deepEqual(sharedPaths(await listProjects(paths)), []);
    await writeFile(join(paths.projectConfigDir, "ph-copy.yaml"), `path: ${dir}\n`);
    const [problem, ...rest] = sharedPaths(await listProjects(paths));
    assert.deepEqual(rest, []);
    assert.match(problem?.problem ?? "", /\/ph\.yaml and .*\/ph-copy\.yaml claim the same directory .*: only ph is used there \(remove the rest with `cloister project remove ph-copy`\)/);
    assert.equal((await projectNameForRoot(dir, paths)).name, "ph", "the message names the one the lookup picks");
  });

  test("checkAllConfig reports every problem of every file, located, and goes on past an unreadable one", async () => {
    const paths = await freshPaths();
    assert.deepEqual(await checkAllConfig(paths), { globalExists: false, files: [], problems: [] }, "no files: nothing to report, nothing written");
    await ensurePrivateDir(paths.configDir);
    await writeFile(paths.globalConfigFile, "limits:\n  memroy: 1G\nbogus: 1\n");
    await registerProject(paths, "good", await freshDir("good"));
    await writeFile(join(paths.projectConfigDir, "bad.yaml"), "limits: {pids: 0}\n");
    execFileSync("mkfifo", [join(paths.projectConfigDir, "fifo.yaml")]);
    await mkdir(join(paths.configDir, "decisions"), { recursive: true });
    await writeFile(join(paths.configDir, "decisions", "global.yaml"), "proxy:\n  alow: [a.example.com]\n");
    const report = await checkAllConfig(paths);
    assert.equal(report.globalExists, true);
    assert.equal(report.files.length, 5, report.files.join(", "));
    assert.deepEqual(
      report.problems.map(formatFileProblem).map((line) => line.replace(paths.configDir, "C")),
      [
        'C/config.yaml:2:3: limits.memroy: unknown key (did you mean "memory"?)',
        "C/config.yaml:3:1: bogus: unknown key (valid keys here: defaults, limits, sandbox, proxy, audit, ui, hostexec, agents)",
        "C/projects/bad.yaml:1:16: limits.pids: \"0\" is not a process count: write a whole number of 1 or more, or none",
        "C/projects/fifo.yaml is not a regular file (a config file must be a plain file)",
        'C/decisions/global.yaml:2:3: proxy.alow: unknown key (did you mean "allow"?)',
      ],
    );
  });

  test("a project directory that does not exist is named in the error, with what to pass instead", async () => {
    await assert.rejects(projectRoot(join(scratch, "no-such-project")), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.equal(error.oneLine(), `project directory ${JSON.stringify(join(scratch, "no-such-project"))} does not exist (pass an existing directory with --project)`);
      return true;
    });
  });

  test("a name taken by another path gets the hash suffix; the owner keeps it", async () => {
    const paths = await freshPaths();
    const base = await freshDir("clash");
    const first = join(base, "one", "app");
    const second = join(base, "two", "app");
    await mkdir(first, { recursive: true });
    await mkdir(second, { recursive: true });
    const firstId = await projectNameFor(first, paths);
    assert.equal(firstId.name, "app");
    await registerProject(paths, firstId.name, firstId.path);

    const secondId = await projectNameFor(second, paths);
    const hash = createHash("sha256").update(secondId.path).digest("hex").slice(0, 6);
    assert.equal(secondId.name, `app-${hash}`);
    await registerProject(paths, secondId.name, secondId.path);

    assert.equal((await projectNameFor(first, paths)).name, "app");
    assert.equal((await projectNameFor(second, paths)).name, `app-${hash}`);
  });

  test("a registered path keeps its name even if the basename no longer matches", async () => {
    const paths = await freshPaths();
    const dir = await freshDir("renamed");
    const real = await realpath(dir);
    await registerProject(paths, "custom", real);
    assert.deepEqual(await projectNameFor(dir, paths), { name: "custom", path: real, registered: true });
  });

  test("resolving a project registers nothing; registerResolved does, once (QA: read-only and failed commands registered projects)", async () => {
    const paths = await freshPaths();
    const root = await realpath(await freshDir("resolved"));
    const first = await resolveProject(paths, root);
    assert.equal(first.registered, false);
    assert.deepEqual(await listProjects(paths), [], "resolving wrote no project file");
    assert.deepEqual(await resolveProject(paths, root), first, "the cached answer is the same");
    await registerResolved(paths, { ...first, root });
    assert.deepEqual((await listProjects(paths)).map((p) => [p.name, p.path]), [[first.project, root]]);
    const again = await resolveProject(paths, root);
    assert.deepEqual({ ...again, registered: true }, { ...first, registered: true });
    assert.equal(again.registered, true, "the registration is seen, not the stale cache entry");
    const file = join(paths.projectConfigDir, `${first.project}.yaml`);
    const before = (await stat(file)).mtimeMs;
    await registerResolved(paths, { ...again, root });
    assert.equal((await stat(file)).mtimeMs, before, "a registered project's file is left alone");
  });

  test("resolveProjectName names a project whose config has problems, which resolveProject refuses (QA: stop without a name needed a valid config)", async () => {
    const paths = await freshPaths();
    const root = await realpath(await freshDir("broken"));
    await registerProject(paths, "mine", root);
    await writeFile(join(paths.projectConfigDir, "mine.yaml"), `path: ${root}\nlimits:\n  cpus: 2\n`);
    await assert.rejects(resolveProject(paths, root), ConfigError);
    assert.equal(await resolveProjectName(paths, root), "mine");
  });

  test("register creates the file (0600) and the project config loads its path", async () => {
    const paths = await freshPaths();
    assert.equal(await registerProject(paths, "app", "/src/my app"), true);
    const file = join(paths.projectConfigDir, "app.yaml");
    assert.equal(mode(await stat(file)), 0o600);
    assert.equal(mode(await stat(paths.projectConfigDir)), 0o700);
    assert.equal((await loadProjectConfig(paths, "app")).path, "/src/my app");
    assert.equal(await registerProject(paths, "app", "/src/my app"), false, "second time: nothing to do");
  });

  test("register adds path to a hand-written file and keeps its comments", async () => {
    const paths = await freshPaths();
    await mkdir(paths.projectConfigDir, { recursive: true });
    const file = join(paths.projectConfigDir, "app.yaml");
    const original = [
      "# My notes about this project",
      "",
      "# libraries I read while working",
      "refs:",
      "  lib: /srv/lib # the shared one",
      "sandbox:",
      "  env:",
      "    - TERM   # for colours",
      "",
      "# the end",
      "",
    ].join("\n");
    await writeFile(file, original);
    assert.equal(await registerProject(paths, "app", "/src/app"), true);
    const text = await readFile(file, "utf8");
    for (const comment of ["# My notes about this project", "# libraries I read while working", "# the shared one", "# for colours", "# the end"]) {
      assert.ok(text.includes(comment), `${comment} kept in:\n${text}`);
    }
    assert.ok(text.indexOf("# libraries I read while working") < text.indexOf("refs:"), "comment stays above its key");
    const config = await loadProjectConfig(paths, "app");
    assert.deepEqual(config.refs, { lib: "/srv/lib" });
    assert.deepEqual(config.sandbox.env, ["TERM"]);
    assert.equal(config.path, "/src/app");
    assert.deepEqual(await readdir(paths.projectConfigDir), ["app.yaml"]);
  });

  test("register refuses a name registered for another path, naming the line", async () => {
    const paths = await freshPaths();
    await registerProject(paths, "app", "/src/a");
    await assert.rejects(registerProject(paths, "app", "/src/b"), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.key, "path");
      assert.match(error.message, /app\.yaml:\d+:7: path: project "app" is already registered for \/src\/a, not \/src\/b/);
      return true;
    });
  });

  test("register refuses bad names, relative paths and files that would not load", async () => {
    const paths = await freshPaths();
    await assert.rejects(registerProject(paths, "../evil", "/x"), CloisterError);
    await assert.rejects(registerProject(paths, "app", "relative"), /not an absolute path/);
    await mkdir(paths.projectConfigDir, { recursive: true });
    const file = join(paths.projectConfigDir, "broken.yaml");
    await writeFile(file, "refs: [\n");
    await assert.rejects(registerProject(paths, "broken", "/x"), ConfigError);
    await writeFile(file, "refz: {}\n");
    await assert.rejects(registerProject(paths, "broken", "/x"), /unknown key/);
    assert.equal(await readFile(file, "utf8"), "refz: {}\n", "left untouched");
  });

  test("list, then remove", async () => {
    const paths = await freshPaths();
    assert.deepEqual(await listProjects(paths), []);
    await registerProject(paths, "zeta", "/z");
    await registerProject(paths, "alpha", "/a");
    await writeFile(join(paths.projectConfigDir, "nopath.yaml"), "refs: {}\n");
    await writeFile(join(paths.projectConfigDir, "notes.txt"), "ignored");
    await writeFile(join(paths.projectConfigDir, ".alpha.yaml.abc123.tmp"), "ignored");
    await writeFile(join(paths.projectConfigDir, "Bad Name.yaml"), "path: /b\n");
    assert.deepEqual(await listProjects(paths), [
      { name: "alpha", path: "/a", configFile: join(paths.projectConfigDir, "alpha.yaml") },
      { name: "nopath", path: null, configFile: join(paths.projectConfigDir, "nopath.yaml") },
      { name: "zeta", path: "/z", configFile: join(paths.projectConfigDir, "zeta.yaml") },
    ]);

    await removeProject(paths, "zeta");
    assert.deepEqual(
      (await listProjects(paths)).map((p) => p.name),
      ["alpha", "nopath"],
    );
    await assert.rejects(removeProject(paths, "zeta"), (error: unknown) => {
      assert.ok(error instanceof CloisterError);
      assert.equal(error.message, 'no project named "zeta"');
      assert.equal(error.hint, "known projects: alpha, nopath");
      return true;
    });
  });

  test("a project file without path can be claimed by its name", async () => {
    const paths = await freshPaths();
    const dir = join(await freshDir("claim"), "app");
    await mkdir(dir);
    await mkdir(paths.projectConfigDir, { recursive: true });
    await writeFile(join(paths.projectConfigDir, "app.yaml"), "# prepared by hand\nlimits: {pids: 64}\n");
    const identity = await projectNameFor(dir, paths);
    assert.equal(identity.name, "app");
    await registerProject(paths, identity.name, identity.path);
    const config = await loadProjectConfig(paths, "app");
    assert.deepEqual([config.path, config.limits.pids], [identity.path, 64]);
  });
});
