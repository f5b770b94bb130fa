import type { Command } from "commander";
import { registerAgentCommands } from "./agent-commands.js";
import { registerApprovalCommands } from "./approval-commands.js";
import { registerAuditCommands } from "./audit-commands.js";
import { registerSecretCommands } from "./secret-commands.js";
import { registerSetupCommands } from "./setup-commands.js";
import { registerCompletionCommands } from "./completion.js";
import { registerConfigCommands } from "./config-commands.js";
import { registerDoctorCommand } from "./doctor-command.js";
import { registerGuardianCommands } from "./guardian-commands.js";
import { registerPolicyCommands } from "./policy-commands.js";
import { registerSandboxCommands } from "./sandbox-commands.js";
import { registerWorktreeCommands } from "./worktree-commands.js";

/**
 * The commands, in groups, each under the top-level names (and aliases) it defines. A command
 * registers its own group only: defining all ~60 commands and their options cost every start ~3 ms,
 * `cloister exec` (the path of every agent session) included. Help, version, a mistyped command and
 * completion (which walks every command) get them all. test/unit/cli-groups.test.ts keeps the
 * names true to what each group registers.
 */
export interface CommandGroup {
  names: readonly string[];
  register: (program: Command) => void;
  /** Its commands look at every other command (completion): registering it registers all. */
  needsAll?: true;
}

export const COMMAND_GROUPS: readonly CommandGroup[] = [
  { names: ["run", "start", "exec", "stop", "list", "ls", "rm", "remove", "path"], register: registerSandboxCommands },
  { names: ["worktree"], register: registerWorktreeCommands },
  { names: ["agent"], register: registerAgentCommands },
  { names: ["allow", "deny", "policy"], register: registerPolicyCommands },
  { names: ["approvals", "undo", "approve", "ui"], register: registerApprovalCommands },
  { names: ["guardian"], register: registerGuardianCommands },
  { names: ["config", "project"], register: registerConfigCommands },
  { names: ["doctor"], register: registerDoctorCommand },
  { names: ["audit"], register: registerAuditCommands },
  { names: ["secret"], register: registerSecretCommands },
  { names: ["setup"], register: registerSetupCommands },
  { names: ["completion", "__complete"], register: registerCompletionCommands, needsAll: true },
];

/** The groups to register for a command line whose first argument is `first` (a command name, an option, or nothing). */
export function commandGroupsFor(first: string | undefined): readonly CommandGroup[] {
  const own = COMMAND_GROUPS.find((group) => first !== undefined && group.names.includes(first));
  return own && !own.needsAll ? [own] : COMMAND_GROUPS;
}
