/**
 * `cloister exec`'s words as typed: the cloister's name, the command, and the refusals of an option
 * among the command's words before `--`, each with the line to type instead.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command } from "commander";
import { readExecWords } from "../../src/cli/exec-words.js";
import { registerSandboxCommands } from "../../src/cli/sandbox-commands.js";
import { CloisterError } from "../../src/errors.js";

const program = new Command();
registerSandboxCommands(program);
const exec = program.commands.find((command) => command.name() === "exec");
assert.ok(exec);
const read = (...words: string[]) => readExecWords(words, exec.options);

/** The one line the CLI prints for the error `read(...words)` throws. */
function refusal(...words: string[]): string {
  try {
    read(...words);
  } catch (error) {
    assert.ok(error instanceof CloisterError);
    return error.oneLine();
  }
  assert.fail(`exec ${words.join(" ")} was not refused`);
}

describe("exec's words", () => {
  it("a name before --, the command after it; no name when -- comes first", () => {
    assert.deepEqual(read("p2", "--", "ls", "-la"), { name: "p2", command: ["ls", "-la"] });
    assert.deepEqual(read("--", "ls", "-la"), { name: undefined, command: ["ls", "-la"] });
    assert.deepEqual(read("-w", "/tmp", "--env", "A=1", "p2", "--", "pwd"), { name: "p2", command: ["pwd"] });
    assert.deepEqual(read("p2", "--", "sh", "-c", "exec -- x"), { name: "p2", command: ["sh", "-c", "exec -- x"] }, "a -- after the first is the command's");
  });

  it("without --, the first word names the cloister and the rest is the command, while it has no options", () => {
    assert.deepEqual(read("p2", "pwd"), { name: "p2", command: ["pwd"] });
    assert.deepEqual(read("--workdir=/tmp", "-wsrc", "p2", "ls", "/work"), { name: "p2", command: ["ls", "/work"] });
    assert.deepEqual(read("--env", "-x", "p2", "ls"), { name: "p2", command: ["ls"] }, "an option's value is not an option");
  });

  it("an option after the command without -- is refused with the line to type", () => {
    assert.equal(refusal("p2", "ls", "-la", "/work/README"), "options after the command must follow -- (cloister exec p2 -- ls -la /work/README)");
    assert.equal(refusal("--env", "A=1", "p2", "grep", "-w", "x y"), "options after the command must follow -- (cloister exec --env A=1 p2 -- grep -w 'x y')", "exec's own -w too");
    assert.equal(refusal("-w", "ls", "p2", "ls", "-l", "--", "x"), "options after the command must follow -- (cloister exec -w ls p2 -- ls -l -- x)");
  });

  it("an option exec does not have, before the command, names exec's options and the usage", () => {
    assert.equal(refusal("-x", "p2", "--", "true"), `unknown option "-x" for exec (exec's own options are --env, --secret, --workdir; usage: cloister exec [NAME] -- CMD [ARGS...])`);
    assert.equal(refusal("ls", "-la"), `unknown option "-la" for exec (exec's own options are --env, --secret, --workdir; if ls is the command, put it after --: cloister exec -- ls -la)`);
  });

  it("no command: says which word was taken as the cloister's name", () => {
    assert.equal(refusal("ls"), "no command given (ls is taken as the cloister's name; usage: cloister exec [NAME] -- CMD [ARGS...])");
    assert.equal(refusal("p2", "--"), "no command given (p2 is taken as the cloister's name; usage: cloister exec [NAME] -- CMD [ARGS...])");
    assert.equal(refusal(), "no command given (usage: cloister exec [NAME] -- CMD [ARGS...])");
  });
});
