/**
 * Escape suite, audit flooding (the audit log of DESIGN.md, "proxy floods" of SECURITY.md's
 * Resources): every refused request gets its record, and the log keeps audit.keep files of
 * audit.max_size, so a cloister that makes refused requests as fast as it can would rotate
 * everyone's history out of the log, its own earlier misdeeds included. The secure outcome: its
 * new work is held to proxy.audit_rate, so the bystander's records written before the flood are
 * still there after it; every refusal the attacker was answered with is in the log (nothing
 * dropped to keep up); the chain verifies; the bystander keeps working.
 *
 * The log here is small (3 files of 128 KiB, about 1,300 records) and the rate low (20 a second
 * after a burst of 40), so the test can tell: unpaced, the attacker's 8 seconds make thousands of
 * records; paced, under 250.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createInstance, type TestInstance } from "../helpers/cloister.js";

const NO_PYTHON = ["/usr/bin/python3", "/usr/local/bin/python3"].some((p) => existsSync(p)) ? false : "python3 is not installed";
const RATE = 20;
const BURST = 40;
const FLOOD_SECONDS = 8;

/**
 * Eight threads, each making refused CONNECTs one after another for FLOOD_SECONDS, each on a new
 * connection with the cloister's token; prints how many 403s came back.
 */
const FLOOD = String.raw`
import base64, os, socket, threading, time
token = os.environ["HTTP_PROXY"].split("cloister:")[1].split("@")[0]
auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"cloister:" + token.encode()) + b"\r\n"
request = b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n" + auth + b"\r\n"
stop = time.time() + ${FLOOD_SECONDS}
refused = [0] * 8
def flood(i):
    while time.time() < stop:
        try:
            s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
            s.sendall(request)
            if s.recv(64).startswith(b"HTTP/1.1 403"):
                refused[i] += 1
            s.close()
        except OSError:
            pass
threads = [threading.Thread(target=flood, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("refused", sum(refused), flush=True)
`;

interface Stored {
  type: string;
  cloister?: string;
  host?: string;
  decision?: string;
}

describe("escape: a cloister floods the proxy with refused requests to rotate the audit history away", { skip: NO_PYTHON }, () => {
  let t: TestInstance;

  before(async () => {
    t = createInstance("aflood");
    const file = join(t.home, "config", "config.yaml");
    const config = readFileSync(file, "utf8")
      .replace(/^  max_size: 64MiB$/m, "  max_size: 128KiB")
      .replace(/^  keep: 10$/m, "  keep: 2")
      .replace(/^  audit_rate: 50$/m, `  audit_rate: ${RATE}`)
      .replace(/^  audit_burst: 5000$/m, `  audit_burst: ${BURST}`);
    assert.ok(config.includes("max_size: 128KiB") && config.includes(`audit_rate: ${RATE}`) && config.includes(`audit_burst: ${BURST}`), "the config template changed: update this test");
    writeFileSync(file, config);
    for (const name of ["bystander", "attacker"]) assert.equal((await t.cli(["start", "-d", "--name", name])).code, 0);
  });
  after(() => t.teardown());

  it("held to proxy.audit_rate: the bystander's earlier records survive, every refusal is recorded, the chain verifies", async () => {
    // The bystander's mark in the history: one refused request of its own, before the flood.
    const mark = await t.cli(["exec", "bystander", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://bystander-mark.test/"]);
    assert.equal(mark.stdout, "403", mark.stderr);

    const started = Date.now();
    const flood = await t.cli(["exec", "attacker", "--", "python3", "-c", FLOOD], { timeoutMs: 120_000 });
    const seconds = (Date.now() - started) / 1000;
    assert.equal(flood.code, 0, flood.stderr);
    const refused = Number(/refused (\d+)/.exec(flood.stdout)?.[1]);
    assert.ok(refused > 0, flood.stdout);

    const tail = await t.cli(["audit", "tail", "-n", "100000", "--json"]);
    assert.equal(tail.code, 0, tail.stderr);
    const records = tail.stdout.trim().split("\n").map((line) => JSON.parse(line) as Stored);
    const attackers = records.filter((r) => r.type === "egress" && r.cloister === "attacker" && r.host === "evil.test");
    assert.equal(attackers.length, refused, "each refusal the attacker was answered with is in the log, and no more");
    // An upper bound only (a slow machine makes fewer): the burst, the rate over the whole exec,
    // and the few connections under way when a turn came.
    assert.ok(refused <= BURST + RATE * seconds + 8, `${refused} refusals in ${seconds.toFixed(1)} s at ${RATE}/s after ${BURST}`);
    assert.ok(
      records.some((r) => r.cloister === "bystander" && r.host === "bystander-mark.test"),
      "the bystander's record from before the flood was rotated out of the log",
    );

    const verify = await t.cli(["audit", "verify"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const alive = await t.cli(["exec", "bystander", "--", "echo", "alive"]);
    assert.equal(alive.stdout, "alive\n", alive.stderr);
  });
});
