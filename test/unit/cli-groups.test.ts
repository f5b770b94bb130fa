import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command } from "commander";
import { COMMAND_GROUPS, commandGroupsFor } from "../../src/cli/command-groups.js";

const topLevelNames = (program: Command) => program.commands.flatMap((c) => [c.name(), ...c.aliases()]);

describe("CLI command groups", () => {
  it("each group's names are exactly the top-level commands and aliases it registers", () => {
    for (const group of COMMAND_GROUPS) {
      const program = new Command();
      group.register(program);
      assert.deepEqual([...topLevelNames(program)].sort(), [...group.names].sort(), group.names.join(", "));
    }
  });

  it("no two groups claim a name, and together they are the whole CLI", () => {
    const all = new Command();
    for (const group of COMMAND_GROUPS) group.register(all);
    const names = topLevelNames(all);
    assert.equal(new Set(names).size, names.length, `a name is registered twice: ${names.join(" ")}`);
  });

  it("a command gets its own group; help, options, unknown names and completion get every group", () => {
    assert.deepEqual(commandGroupsFor("exec").map((g) => g.names[0]), ["run"]);
    assert.deepEqual(commandGroupsFor("ls").map((g) => g.names[0]), ["run"]);
    assert.deepEqual(commandGroupsFor("deny").map((g) => g.names[0]), ["allow"]);
    for (const first of [undefined, "--help", "-V", "help", "exce", "completion", "__complete"]) assert.equal(commandGroupsFor(first), COMMAND_GROUPS, String(first));
  });
});
