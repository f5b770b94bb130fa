import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { auditArgv, auditsWhole } from "../../src/audit/argv-text.js";
import { MAX_VALUE_LENGTH } from "../../src/audit/record.js";

describe("auditArgv: an argv as the audit log holds it", () => {
  const masked = (word: string): string => (JSON.parse(auditArgv([word])) as string[])[0] ?? "";

  it("masks the user information of a URL, password and user alike", () => {
    assert.equal(masked("https://bob:TOKEN@github.com/o/r.git"), "https://***@github.com/o/r.git");
    assert.equal(masked("https://ghp_TOKEN@github.com"), "https://***@github.com");
    assert.equal(masked("ssh://git@github.com/o/r"), "ssh://***@github.com/o/r");
  });

  it("takes the authority's last @ as the host's, as URL parsers do", () => {
    assert.equal(masked("https://a:p@ss@host.test/x"), "https://***@host.test/x");
  });

  it("finds URLs inside a word, several in one", () => {
    assert.equal(masked("--url=https://u:p@a.test,https://v:q@b.test"), "--url=https://***@a.test,https://***@b.test");
  });

  it("leaves alone what has no URL user information", () => {
    for (const word of ["git@github.com:o/r.git", "mailto:a@b.test", "https://host.test/path@v2", "https://host.test/?who=a@b", "user@host", "plain"]) {
      assert.equal(masked(word), word);
    }
  });

  it("keeps the argv's JSON array text otherwise exact", () => {
    const argv = ["git", "push", 'quote " and \\\\ back', ""];
    assert.equal(auditArgv(argv), JSON.stringify(argv));
  });
});

describe("auditArgv: an argv too long for a record", () => {
  const words = (text: string): string[] => JSON.parse(text) as string[];

  it("keeps every word, the long ones shortened to their ends, within a record's length", () => {
    // Padding ahead of the argument that matters must not push it out (red team).
    const argv = ["git", "format-patch", `--subject-prefix=${"A".repeat(4200)}`, "--signature-file=/home/u/.ssh/id_ed25519", "-1"];
    const text = auditArgv(argv);
    assert.ok(text.length <= MAX_VALUE_LENGTH, `${text.length}`);
    const kept = words(text);
    assert.equal(kept.length, argv.length);
    assert.deepEqual([kept[0], kept[1], kept[3], kept[4]], [argv[0], argv[1], argv[3], argv[4]]);
    assert.match(kept[2] ?? "", /^--subject-prefix=A+…\[\d+ more\]…A+$/);
    assert.equal(auditsWhole(argv), true);
  });

  it("shortens all long words alike, and masks URL credentials before shortening", () => {
    const argv = ["git", "push", `https://bob:${"T".repeat(3000)}@github.com/o/r`, "B".repeat(5000)];
    const kept = words(auditArgv(argv));
    assert.ok(!kept.join("").includes("TTTT"), "the token's characters are masked, not shortened");
    assert.equal(kept[2], "https://***@github.com/o/r");
    assert.match(kept[3] ?? "", /^B+…\[\d+ more\]…B+$/);
  });

  it("says when even the shortest form of every word does not fit: a command the audit cannot hold whole", () => {
    const many = ["git", "add", ...Array.from({ length: 200 }, (_, i) => `${"x".repeat(60)}-${i}`)];
    assert.equal(auditsWhole(many), false);
    assert.equal(auditsWhole(["git", "add", ...Array.from({ length: 50 }, (_, i) => `file-${i}.ts`)]), true);
  });
});
