/**
 * The egress path end to end: real bubblewrap cloisters, the real guardian, curl and socat inside,
 * and recording servers on loopback standing in for the internet (reached through name overrides).
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, waitUntil, type TestInstance } from "../helpers/cloister.js";
import { createTestCa, startHttpsUpstream, startHttpUpstream, startTcpEcho, type HttpsUpstream, type TestCa, type Upstream } from "../fixtures/upstreams.js";

describe("egress through the guardian", () => {
  let t: TestInstance;
  let ca: TestCa;
  let web: Upstream;
  let secure: HttpsUpstream;
  let echo: Upstream;
  let sink: Upstream;

  /** Flags that point test names at the loopback servers; `private` because loopback is not public. */
  const names = () => [
    ...["web.test", "secure.test", "echo.test", "sink.test"].flatMap((name) => ["--resolve", `${name}=127.0.0.1`]),
    "--allow",
    `web.test:${web.port}`,
    "--allow",
    `secure.test:${secure.port}`,
    "--allow",
    `echo.test:${echo.port}`,
    "--deny",
    `sink.test:${sink.port}`,
  ];
  const run = (script: string, extra: string[] = []) => t.cli(["run", ...names(), ...extra, "--", "sh", "-c", script]);

  before(async () => {
    t = createInstance("eg");
    ca = createTestCa();
    [web, secure, echo, sink] = await Promise.all([startHttpUpstream(), startHttpsUpstream(ca, ["secure.test"]), startTcpEcho({ banner: "SSH-2.0-fake\r\n" }), startHttpUpstream()]);
    copyFileSync(ca.certFile, join(t.project, "test-ca.pem"));
  });
  after(async () => {
    await t.teardown();
    await Promise.all([web, secure, echo, sink].map((u) => u.close()));
  });

  it("forwards plain HTTP to an allowed name, with the Host rebuilt and the proxy credentials stripped", async () => {
    const r = await run(`curl -sS -m 10 http://web.test:${web.port}/plain -H 'Proxy-Connection: keep-alive' -H 'Connection: X-Secret' -H 'X-Secret: hop'`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello from upstream\n");
    const seen = web.requests.at(-1);
    assert.equal(seen?.url, "/plain");
    assert.equal(seen?.headers.host, `web.test:${web.port}`);
    for (const header of ["proxy-authorization", "proxy-connection", "x-secret"]) assert.equal(seen?.headers[header], undefined, header);
  });

  it("points every proxy variable at the cloister's port, and has Node.js (22.21 and later) use them for its own fetch and https", async () => {
    const r = await run('for v in HTTP_PROXY https_proxy ALL_PROXY NO_PROXY NODE_USE_ENV_PROXY; do printenv "$v" | sed "s/:[0-9a-f]*@/:TOKEN@/"; done');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [
      "http://cloister:TOKEN@127.0.0.1:3128",
      "http://cloister:TOKEN@127.0.0.1:3128",
      "socks5h://cloister:TOKEN@127.0.0.1:3128",
      "localhost,127.0.0.1,::1",
      "1",
    ]);
  });

  it("tunnels HTTPS with CONNECT; TLS is end to end (the upstream's certificate is verified inside)", async () => {
    const r = await run(`curl -sS -m 10 --cacert /work/test-ca.pem https://secure.test:${secure.port}/tls`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello from upstream\n");
    assert.equal(secure.servernames.at(-1), "secure.test");
  });

  it("carries SOCKS5 with the token (curl through ALL_PROXY) and refuses a client without credentials", async () => {
    const r = await run(`curl -sS -m 10 -x "$ALL_PROXY" http://web.test:${web.port}/socks; echo; curl -sS -m 10 -x socks5h://127.0.0.1:3128 http://web.test:${web.port}/noauth; echo "rc=$?"`);
    assert.match(r.stdout, /^hello from upstream\n/);
    assert.match(r.stdout, /rc=97/);
    assert.equal(web.requests.filter((q) => q.url === "/noauth").length, 0);
  });

  it("routes ssh through the proxy (GIT_SSH_COMMAND's ProxyCommand reaches an allowed host:22-like port)", async () => {
    // What ssh does with the ProxyCommand: substitute %h and %p, run it, speak over its stdio.
    const script = `cmd=$(printf '%s' "$GIT_SSH_COMMAND" | sed -e "s/^ssh -o ProxyCommand='//" -e "s/'$//" -e "s/%h/echo.test/" -e "s/%p/${echo.port}/"); printf 'SSH-2.0-client\\r\\n' | timeout 5 sh -c "$cmd"`;
    const r = await run(script);
    assert.match(r.stdout, /SSH-2\.0-fake/);
    assert.match(echo.received.toString(), /SSH-2\.0-client/);
  });

  it("refuses denied and unlisted hosts on every protocol with a message that says how to allow them; the sink sees nothing", async () => {
    const r = await run(
      [
        `curl -sS -m 10 -o /dev/null -w '%{http_code}\\n' http://sink.test:${sink.port}/http`,
        `curl -sS -m 10 -p http://sink.test:${sink.port}/connect 2>&1 | tail -1`,
        `curl -sS -m 10 -x "$ALL_PROXY" http://sink.test:${sink.port}/socks; echo "socks=$?"`,
        `curl -sS -m 10 http://unlisted.test:${web.port}/x`,
      ].join("; "),
    );
    assert.match(r.stdout, /^403\n/);
    assert.match(r.stdout, /CONNECT.*403|403/);
    assert.match(r.stdout, /socks=97/);
    assert.match(r.stdout, new RegExp(`unlisted\\.test:${web.port}.*cloister allow unlisted\\.test:${web.port}`));
    assert.equal(sink.connections, 0);
  });

  it("refuses a name that resolves to loopback unless the rule opts in to private addresses", async () => {
    const refused = await run(`curl -sS -m 10 --noproxy "" http://localhost:${web.port}/lo`, ["--allow", `localhost:${web.port}`]);
    assert.match(refused.stdout, /non-public address/);
    const allowed = await run(`curl -sS -m 10 --noproxy "" http://localhost:${web.port}/lo`, ["--allow-private", `localhost:${web.port}`]);
    assert.equal(allowed.stdout, "hello from upstream\n");
    assert.equal(web.requests.filter((q) => q.url === "/lo").length, 1);
  });

  it("refuses IP literals in every spelling unless a rule names that address", async () => {
    const spellings = ["127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "[::ffff:127.0.0.1]"];
    const script = spellings.map((s) => `curl -sS -m 10 --noproxy "" -o /dev/null -w '%{http_code}\\n' http://${s}:${web.port}/ip`).join("; ");
    const refused = await run(script);
    assert.deepEqual(refused.stdout.trim().split("\n"), spellings.map(() => "403"));
    const named = await run(`curl -sS -m 10 --noproxy "" -o /dev/null -w '%{http_code}\\n' http://127.1:${web.port}/ip`, ["--allow", `127.0.0.1:${web.port}`]);
    assert.equal(named.stdout.trim(), "200");
  });

  it("asks for the proxy token: 407 without it or with another cloister's", async () => {
    const r = await run(
      `curl -sS -m 10 --noproxy '' -x http://127.0.0.1:3128 -o /dev/null -w '%{http_code}\\n' http://web.test:${web.port}/; ` +
        `curl -sS -m 10 -x http://cloister:${"0".repeat(64)}@127.0.0.1:3128 -o /dev/null -w '%{http_code}\\n' http://web.test:${web.port}/`,
    );
    assert.deepEqual(r.stdout.trim().split("\n"), ["407", "407"]);
  });

  it("rejects a bad session rule before anything starts, leaving nothing behind", async () => {
    // The guardian refuses the rule while the launch prepares the host side beside it: what was
    // prepared (placeholders, cgroups, the waiting keeper, the record) goes again.
    const before = readdirSync(t.project).sort();
    for (let i = 0; i < 3; i++) {
      const r = await t.cli(["run", "--allow", "*.com", "--", "true"]);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /--allow \*\.com: .*top-level domain/);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    assert.deepEqual(readdirSync(t.project).sort(), before);
    assert.equal((await t.cli(["list", "--json"])).stdout.trim(), "[]");
  });

  describe("a persistent cloister", () => {
    const name = "egress-live";
    before(async () => {
      const r = await t.cli(["start", "-d", "--name", name, ...names()]);
      assert.equal(r.code, 0, r.stderr);
    });
    after(async () => {
      await t.cli(["stop", name]);
    });
    const exec = (script: string) => t.cli(["exec", name, "--", "sh", "-c", script]);
    const status = (url: string) => exec(`curl -sS -m 10 -o /dev/null -w '%{http_code}' ${url}`);

    it("applies `cloister allow` and `cloister deny` at once, without a restart", async () => {
      const url = `http://later.test:${web.port}/later`;
      assert.equal((await status(url)).stdout, "403");
      const allowed = await t.cli(["allow", `later.test:${web.port}`, "--private"]);
      assert.equal(allowed.code, 0, allowed.stderr);
      // later.test is not mapped: the guardian resolves it on the host, where it does not exist.
      assert.equal((await status(url)).stdout, "502");
      const denied = await t.cli(["deny", `later.test:${web.port}`]);
      assert.equal(denied.code, 0, denied.stderr);
      assert.equal((await status(url)).stdout, "403");
      const decisionFile = join(t.home, "config", "decisions", "projects", `${await projectName(t)}.yaml`);
      assert.match(readFileSync(decisionFile, "utf8"), /later\.test/);

      // --remove takes them away again, at once too (QA H6: only an edit of the file could).
      const undenied = await t.cli(["deny", "--remove", `later.test:${web.port}`]);
      assert.equal(undenied.code, 0, undenied.stderr);
      assert.match(undenied.stderr, new RegExp(`^Removed the deny rule later\\.test:${web.port} for project `));
      assert.equal((await status(url)).stdout, "502");
      const unallowed = await t.cli(["allow", "--remove", `later.test:${web.port}`]); // written with --private; removed all the same
      assert.equal(unallowed.code, 0, unallowed.stderr);
      assert.equal((await status(url)).stdout, "403");
      assert.doesNotMatch(readFileSync(decisionFile, "utf8"), /later\.test/);
      const again = await t.cli(["allow", "--remove", `later.test:${web.port}`]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /was not on the allow list for project .*; nothing changed/);
      // A rule of a config file is not the decision file's to remove: said, with the file to edit.
      const configured = await t.cli(["allow", "--remove", "registry.npmjs.org", "--global"]);
      assert.equal(configured.code, 125);
      assert.match(configured.stderr, /the allow rule registry\.npmjs\.org for every project is written in .*config\.yaml, which --remove does not change \(remove it there \(cloister config edit\)/);
      const audited = readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8");
      assert.match(audited, new RegExp(`"policy\\.change".*"list":"deny","rule":"later\\.test:${web.port}","removed":true`));
    });

    it("keeps a live tunnel across `guardian reload`, and keeps the old policy when the new config is invalid", async () => {
      const tunnel = t.cli(["exec", name, "--", "sh", "-c", `(printf 'one\\n'; sleep 3; printf 'two\\n') | socat -t 5 - PROXY:127.0.0.1:echo.test:${echo.port},proxyport=3128,proxyauth=cloister:$(printf '%s' "$HTTP_PROXY" | sed 's/.*cloister:\\([0-9a-f]*\\)@.*/\\1/')`]);
      await waitUntil("the tunnel to carry its first line", () => echo.received.toString().includes("one"));
      const configFile = join(t.home, "config", "config.yaml");
      const good = readFileSync(configFile, "utf8");
      writeFileSync(configFile, `${good}\nbogus_key: 1\n`);
      const broken = await t.cli(["guardian", "reload"]);
      assert.equal(broken.code, 125);
      assert.match(broken.stderr, /config\.yaml:\d+:\d+: bogus_key: unknown key/);
      writeFileSync(configFile, good);
      assert.equal((await t.cli(["guardian", "reload"])).code, 0);
      const r = await tunnel;
      assert.match(r.stdout, /one\ntwo\n/, r.stderr);
      assert.equal((await status(`http://web.test:${web.port}/after-reload`)).stdout, "200");
    });

    it("regains network after the guardian is killed with SIGKILL, with its session rules", async () => {
      const pid = Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8"));
      process.kill(pid, "SIGKILL");
      await waitUntil("the guardian to be gone", () => !existsSync(`/proc/${pid}`));
      // Status says which cloisters it left without network, and what brings it back (QA: "not running" only).
      const down = await t.cli(["guardian", "status"]);
      assert.equal(down.code, 3);
      assert.equal(down.stdout, `Guardian: not running\n1 cloister(s) run without it, with no network until it runs again: ${name} (start it: \`cloister guardian start\`)\n`);
      const downJson = await t.cli(["guardian", "status", "--json"]);
      assert.equal(downJson.code, 3);
      assert.deepEqual(JSON.parse(downJson.stdout), { running: false, cloistersWithoutNetwork: [name] });
      // So does list, which reads records and starts no guardian (QA: it listed "proxy").
      const listed = await t.cli(["list"]);
      assert.match(listed.stdout, new RegExp(`^${name} .* no guardian `, "m"));
      assert.match(listed.stderr, /The guardian is not running: .*cloister guardian start/);
      const listedJson = JSON.parse((await t.cli(["list", "--json"])).stdout) as { name: string; network: boolean; egressUp: boolean }[];
      assert.deepEqual(listedJson.filter((c) => c.name === name).map((c) => [c.network, c.egressUp]), [[true, false]]);
      // exec brings the guardian back (it re-adopts the cloister and re-opens its socket).
      assert.equal((await status(`http://web.test:${web.port}/after-crash`)).stdout, "200");
      assert.equal((await status(`http://sink.test:${sink.port}/after-crash`)).stdout, "403");
      assert.equal(sink.connections, 0);
      // The new guardian's start says that the one before it did not stop cleanly.
      const starts = readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
        .split("\n")
        .filter((line) => line.includes('"guardian.start"'))
        .map((line) => JSON.parse(line) as { pid: number; previous: string; lastRecordAt?: string });
      assert.equal(starts.at(-1)?.previous, "crashed");
      assert.match(starts.at(-1)?.lastRecordAt ?? "", /^\d{4}-\d\d-\d\dT/);
      assert.equal(starts[0]?.previous, "none");
    });
  });

  it("`allow` while the configuration does not load changes nothing and says so; config validate checks the decision files too", async () => {
    const configFile = join(t.home, "config", "config.yaml");
    const decisions = join(t.home, "config", "decisions", "global.yaml");
    const good = readFileSync(configFile, "utf8");
    const decisionsBefore = existsSync(decisions) ? readFileSync(decisions, "utf8") : undefined;
    try {
      writeFileSync(configFile, `${good}\nbogus_key: 1\n`);
      const refused = await t.cli(["allow", "written-anyway.example.com", "--global"]);
      assert.equal(refused.code, 125);
      assert.match(refused.stderr, /nothing was changed: the configuration does not load: .*config\.yaml:\d+:\d+: bogus_key: unknown key/);
      assert.equal(existsSync(decisions) ? readFileSync(decisions, "utf8") : undefined, decisionsBefore);
      writeFileSync(configFile, good);
      assert.equal((await t.cli(["guardian", "reload"])).code, 0);
      assert.match((await t.cli(["policy", "explain", "written-anyway.example.com"])).stdout, /unlisted/);

      mkdirSync(dirname(decisions), { recursive: true });
      writeFileSync(decisions, "proxy:\n  alow: [a.example.com]\n  deni: []\n");
      const validate = await t.cli(["config", "validate"]);
      assert.equal(validate.code, 1);
      assert.match(validate.stderr, /decisions\/global\.yaml:2:3: proxy\.alow: unknown key/);
      // A guardian started on it refuses all egress; a launch says so (QA: only `guardian status` did).
      assert.equal((await t.cli(["guardian", "stop"])).code, 0);
      const launched = await t.cli(["run", "--", "true"]);
      assert.equal(launched.code, 0, launched.stderr);
      // Both problems, not the first only.
      assert.match(launched.stderr, /cloister: the configuration does not load, so the guardian refuses all egress until it is fixed: 2 problems in \S+decisions\/global\.yaml: \S+:2:3: proxy\.alow: unknown key; \S+:3:3: proxy\.deni: unknown key/);
    } finally {
      writeFileSync(configFile, good);
      if (decisionsBefore === undefined) rmSync(decisions, { force: true });
      else writeFileSync(decisions, decisionsBefore);
      await t.cli(["guardian", "reload"]);
    }
  });

  it("a guardian that starts on an invalid config refuses all egress and says why in `guardian status`", async () => {
    const configFile = join(t.home, "config", "config.yaml");
    const good = readFileSync(configFile, "utf8");
    try {
      await t.cli(["guardian", "stop"]);
      writeFileSync(configFile, good.replace("max_connections: 1024", "max_connections: lots"));
      // start says so too, and exits as status does (QA: "Guardian running", exit 0).
      const started = await t.cli(["guardian", "start"]);
      assert.equal(started.code, 1);
      assert.match(started.stderr, /^Guardian running \(pid \d+\)\.\nEgress policy: INVALID, all egress refused: .*config\.yaml:\d+:\d+: proxy\.max_connections.*\(fix it, then `cloister guardian reload`\)\n$/);
      const broken = await t.cli(["guardian", "status"]);
      assert.equal(broken.code, 1);
      assert.match(broken.stdout, /Egress policy: INVALID, all egress refused: .*config\.yaml:\d+:\d+: proxy\.max_connections/);
    } finally {
      writeFileSync(configFile, good);
    }
    assert.equal((await t.cli(["guardian", "reload"])).code, 0);
    const fixed = await t.cli(["guardian", "status", "--json"]);
    assert.equal((JSON.parse(fixed.stdout) as { policyError: string | null }).policyError, null);
  });

  it("with the global and the project file broken, `guardian reload`, `allow`, `deny` and `guardian status` name every problem of both (QA: the first only)", async () => {
    const configFile = join(t.home, "config", "config.yaml");
    const projectFile = join(t.home, "config", "projects", `${await projectName(t)}.yaml`);
    const good = readFileSync(configFile, "utf8");
    const goodProject = readFileSync(projectFile, "utf8");
    const decisions = join(t.home, "config", "decisions", "global.yaml");
    const decisionsBefore = existsSync(decisions) ? readFileSync(decisions, "utf8") : undefined;
    const name = "eg-both-broken";
    // A cloister of the project running: the guardian's policy holds the project's tier, also after a restart.
    const started = await t.cli(["start", "-d", "--name", name]);
    assert.equal(started.code, 0, started.stderr);
    // Each file gets a line of its own at its end (after an empty one), where its problem is.
    const globalProblem = `  ${configFile}:${good.split("\n").length + 1}:1: bogus_key: unknown key`;
    const projectProblem = `  ${projectFile}:${goodProject.split("\n").length + 1}:1: bogus_project_key: unknown key`;
    const namesBoth = (stream: string, heading: RegExp) => {
      const lines = stream.split("\n");
      assert.match(lines[0] ?? "", heading, stream);
      assert.ok(lines.some((line) => line.startsWith(globalProblem)), `${globalProblem} in:\n${stream}`);
      assert.ok(lines.some((line) => line.startsWith(projectProblem)), `${projectProblem} in:\n${stream}`);
    };
    try {
      writeFileSync(configFile, `${good}\nbogus_key: 1\n`);
      writeFileSync(projectFile, `${goodProject}\nbogus_project_key: 2\n`);

      const reload = await t.cli(["guardian", "reload"]);
      assert.equal(reload.code, 125);
      namesBoth(reload.stderr, /^cloister: 2 problems in 2 config files \(fix each; `cloister config validate` checks them all again\):$/);
      for (const args of [["allow", "both-broken.example.com", "--global"], ["deny", "both-broken.example.com"]]) {
        const refused = await t.cli(args);
        assert.equal(refused.code, 125, args.join(" "));
        namesBoth(refused.stderr, /^cloister: nothing was changed: the configuration does not load: 2 problems in 2 config files /);
      }
      assert.equal(existsSync(decisions) ? readFileSync(decisions, "utf8") : undefined, decisionsBefore);
      // The failed reload kept the policy in force; status says so, and that the files no longer
      // load, naming every problem, and exits 2 (QA: "loaded", exit 0), as does start.
      for (const args of [["guardian", "status"], ["guardian", "start"]]) {
        const stale = await t.cli(args);
        assert.equal(stale.code, 2, args.join(" "));
        const out = args[1] === "status" ? stale.stdout : stale.stderr;
        namesBoth(out.slice(out.indexOf("Egress policy:")), /^Egress policy: loaded at \d{4}-\d\d-\d\dT[\d:.]+Z, still in force, but the configuration files no longer load \(a reload failed\): 2 problems in 2 config files \(fix each, then `cloister guardian reload`\):$/);
      }
      const staleJson = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { policyError: string | null; reloadError: string | null; reloadProblems: { file: string; key: string }[] };
      assert.equal(staleJson.policyError, null);
      assert.match(staleJson.reloadError ?? "", /^2 problems in 2 config files: /);
      assert.deepEqual(staleJson.reloadProblems.map((p) => [p.file, p.key]), [[configFile, "bogus_key"], [projectFile, "bogus_project_key"]]);

      // A guardian that starts on them (this one killed: the cloister runs on, and is adopted) refuses
      // all egress. It reads the project's file once asked to reload, and then names both files' problems.
      process.kill(Number(readFileSync(join(t.home, "run", "guardian.pid"), "utf8")), "SIGKILL");
      assert.equal((await t.cli(["guardian", "start"])).code, 1);
      assert.equal((await t.cli(["guardian", "reload"])).code, 125);
      const status = await t.cli(["guardian", "status"]);
      assert.equal(status.code, 1);
      const policy = status.stdout.slice(status.stdout.indexOf("Egress policy:"), status.stdout.indexOf("Open proxy connections:"));
      namesBoth(policy, /^Egress policy: INVALID, all egress refused: 2 problems in 2 config files \(fix each, then `cloister guardian reload`\):$/);
      const json = await t.cli(["guardian", "status", "--json"]);
      assert.equal(json.code, 1);
      const { policyProblems } = JSON.parse(json.stdout) as { policyProblems: { file: string; line: number; column: number; key: string }[] };
      assert.deepEqual(
        policyProblems.map((p) => `  ${p.file}:${p.line}:${p.column}: ${p.key}`),
        [globalProblem, projectProblem].map((line) => line.replace(/: unknown key$/, "")),
      );
    } finally {
      writeFileSync(configFile, good);
      writeFileSync(projectFile, goodProject);
      await t.cli(["guardian", "reload"]);
      await t.cli(["stop", name]);
    }
    const fixed = await t.cli(["guardian", "status", "--json"]);
    assert.equal(fixed.code, 0, fixed.stdout);
    const fixedJson = JSON.parse(fixed.stdout) as { policyProblems: unknown; reloadError: unknown; reloadProblems: unknown };
    assert.deepEqual([fixedJson.policyProblems, fixedJson.reloadError, fixedJson.reloadProblems], [null, null, null]);
  });

  it("the guardian's start, reload and stop records each name its pid and version, as docs/audit.md lists them (QA: the stop had neither)", async () => {
    // A guardian of its own, whose records are these three only.
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    assert.equal((await t.cli(["guardian", "start"])).code, 0);
    const { pid, version } = JSON.parse((await t.cli(["guardian", "status", "--json"])).stdout) as { pid: number; version: string };
    assert.equal((await t.cli(["guardian", "reload"])).code, 0);
    assert.equal((await t.cli(["guardian", "stop"])).code, 0);
    const records = readFileSync(join(t.home, "state", "audit", "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((record) => record.pid === pid);
    assert.deepEqual(
      records.map((record) => [record.type, record.version]),
      [["guardian.start", version], ["guardian.reload", version], ["guardian.stop", version]],
    );
  });

  it("audits every decision in a signed, hash-chained log that verifies", async () => {
    const withToken = await run(`printf '%s' "$HTTP_PROXY"; curl -sS -m 10 -o /dev/null http://web.test:${web.port}/audited`);
    const token = /cloister:([0-9a-f]{64})@/.exec(withToken.stdout)?.[1];
    assert.ok(token, withToken.stdout);
    const tail = await t.cli(["audit", "tail", "-n", "1000", "--json"]);
    assert.equal(tail.code, 0, tail.stderr);
    const events = tail.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(events.some((e) => e.type === "egress" && e.host === "sink.test" && e.decision === "denied"));
    assert.ok(events.some((e) => e.type === "egress" && e.host === "web.test" && e.decision === "allow" && e.address === "127.0.0.1"));
    assert.ok(events.some((e) => e.type === "egress.end" && typeof e.bytesDown === "number" && (e.bytesDown as number) > 0));
    assert.ok(events.some((e) => e.type === "cloister.start") && events.some((e) => e.type === "cloister.stop"));
    assert.ok(!tail.stdout.includes(token), "no proxy token in the audit log");
    const verify = await t.cli(["audit", "verify"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});

async function projectName(t: TestInstance): Promise<string> {
  const projects = JSON.parse((await t.cli(["project", "list", "--json"])).stdout) as { name: string; path?: string }[];
  const project = projects.find((p) => p.path === t.project);
  assert.ok(project, `project ${t.project} is registered`);
  return project.name;
}
