import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { auditArgv } from "../../src/audit/argv-text.js";

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
