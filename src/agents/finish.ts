/**
 * The agent-specific part of set-up, on the staging HOME after the host config was copied into it:
 * onboarding and trust pre-answered for /work, permission-prompt acceptance recorded when prompts
 * are skipped. One function per built-in agent; custom agents need none.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { WORK_DIR } from "../sandbox/bwrap/mounts.js";
import { isPlainObject } from "./config-transform.js";
import type { AgentDefinition } from "./registry.js";
import { mapping, updateJsonFile, updateTomlFile } from "./staged-files.js";

export interface FinishContext {
  /** The staging directory standing for the cloister's HOME. */
  stage: string;
  hostHome: string;
  agent: AgentDefinition;
  /** The environment the agent will get, its credential included. */
  env: Readonly<Record<string, string>>;
  notes: string[];
}

export const FINISHERS: Readonly<Record<string, (ctx: FinishContext) => void>> = {
  claude: finishClaude,
  codex: finishCodex,
  gemini: finishGemini,
};

/** Preferences worth keeping from the host's ~/.claude.json; the rest (account, per-project history, MCP servers with their env) stays out. */
const CLAUDE_JSON_KEPT = ["theme", "editorMode", "verbose", "autoCompactEnabled", "preferredNotifChannel", "lastOnboardingVersion", "lastReleaseNotesSeen", "diffTool", "messageIdleNotifThresholdMs"];

function finishClaude(ctx: FinishContext): void {
  const host = readJson(join(ctx.hostHome, ".claude.json"));
  const kept = Object.fromEntries(CLAUDE_JSON_KEPT.filter((key) => key in host).map((key) => [key, host[key]]));
  const apiKey = ctx.env.ANTHROPIC_API_KEY;
  updateJsonFile(join(ctx.stage, ".claude.json"), ctx.notes, () => ({
    ...kept,
    hasCompletedOnboarding: true,
    autoUpdates: false,
    bypassPermissionsModeAccepted: ctx.agent.skipPermissions,
    projects: { [WORK_DIR]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true, projectOnboardingSeenCount: 1, allowedTools: [] } },
    // Claude Code asks once whether to use a key found in its environment, remembering the key's end.
    ...(apiKey ? { customApiKeyResponses: { approved: [apiKey.slice(-20)], rejected: [] } } : {}),
  }));
  if (ctx.agent.skipPermissions) {
    updateJsonFile(join(ctx.stage, ".claude", "settings.json"), ctx.notes, (settings) => ({ ...settings, skipDangerousModePermissionPrompt: true }));
  }
}

function finishCodex(ctx: FinishContext): void {
  updateTomlFile(join(ctx.stage, ".codex", "config.toml"), ctx.notes, (config) => {
    const projects = mapping(config, "projects");
    return { ...config, projects: { ...projects, [WORK_DIR]: { ...mapping(projects, WORK_DIR), trust_level: "trusted" } } };
  });
}

function finishGemini(ctx: FinishContext): void {
  updateJsonFile(join(ctx.stage, ".gemini", "trustedFolders.json"), ctx.notes, (folders) => ({ ...folders, [WORK_DIR]: "TRUST_FOLDER" }));
  if (ctx.env.GEMINI_API_KEY) {
    // Without a chosen auth type the interactive CLI opens its login dialog even with a key at hand.
    updateJsonFile(join(ctx.stage, ".gemini", "settings.json"), ctx.notes, (settings) => {
      const security = mapping(settings, "security");
      return { ...settings, security: { ...security, auth: { ...mapping(security, "auth"), selectedType: "gemini-api-key" } } };
    });
  }
}

function readJson(path: string): Record<string, unknown> {
  try {
    const data: unknown = JSON.parse(readFileSync(path, "utf8"));
    return isPlainObject(data) ? data : {};
  } catch {
    return {};
  }
}
