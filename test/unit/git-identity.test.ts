/**
 * The git identity a cloister gets: read as host git would in the project, written to the
 * cloister's ~/.gitconfig so that git reads back exactly the same values; a file already there stays.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { hostGitIdentity, identityToSeed, seedGitIdentity } from "../../src/sandbox/git-identity.js";

const base = mkdtempSync(join(tmpdir(), "cloister-git-identity-"));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;
const fresh = (): string => mkdtempSync(join(base, `${++counter}-`));
/** A repository whose own config names Repo Person <repo@example.com>. */
function repoWithIdentity(): string {
  const repo = fresh();
  spawnSync("git", ["init", "-q", repo]);
  spawnSync("git", ["-C", repo, "config", "user.name", "Repo Person"]);
  spawnSync("git", ["-C", repo, "config", "user.email", "repo@example.com"]);
  return repo;
}
const readBack = (home: string, key: string): string => spawnSync("git", ["config", "--file", join(home, ".gitconfig"), key], { encoding: "utf8" }).stdout;

describe("git identity", () => {
  it("reads user.name and user.email as git does in the project (its own config first)", async () => {
    assert.deepEqual(await hostGitIdentity(repoWithIdentity()), { name: "Repo Person", email: "repo@example.com" });
  });

  it("writes values git reads back unchanged: quotes, backslashes, tabs, newlines", () => {
    const home = fresh();
    const identity = { name: 'A "quoted" \\ name\twith tab', email: "odd\nline@example.com" };
    seedGitIdentity(home, identity);
    assert.equal(readBack(home, "user.name"), `${identity.name}\n`);
    assert.equal(readBack(home, "user.email"), `${identity.email}\n`);
  });

  it("reads nothing for a HOME whose ~/.gitconfig exists (a persistent cloister started again)", async () => {
    const repo = repoWithIdentity();
    const home = fresh();
    assert.deepEqual(await identityToSeed(home, repo), { name: "Repo Person", email: "repo@example.com" });
    writeFileSync(join(home, ".gitconfig"), "");
    assert.deepEqual(await identityToSeed(home, repo), {});
  });

  it("leaves a ~/.gitconfig that exists alone, and writes nothing without an identity", () => {
    const kept = fresh();
    writeFileSync(join(kept, ".gitconfig"), "[user]\n\tname = Set Inside\n");
    seedGitIdentity(kept, { name: "From Host", email: "host@example.com" });
    assert.equal(readFileSync(join(kept, ".gitconfig"), "utf8"), "[user]\n\tname = Set Inside\n");
    const empty = fresh();
    seedGitIdentity(empty, {});
    assert.equal(spawnSync("test", ["-e", join(empty, ".gitconfig")]).status, 1);
  });
});
