import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { CloisterError } from "../errors.js";
import { credentialSecretName, CREDENTIAL_KINDS, type CredentialKind } from "../guardian/vault/agent-credentials.js";
import type { SecretInfo } from "../guardian/vault/vault.js";
import { call, readSecret, refuseWhileLocked } from "./secret-commands.js";

interface CredentialChoice {
  kind: CredentialKind;
  label: string;
  /** Where the user gets one. */
  where: string;
  /**
   * How every such credential has started so far (the built-in injection rules keep the same prefixes
   * in placeholders); a value that does not is probably a slip, but formats change, so it is a warning.
   */
  prefix: string;
}

/** What each built-in agent can log in with. */
const AGENT_CREDENTIALS: Readonly<Record<string, readonly CredentialChoice[]>> = {
  claude: [
    { kind: "oauth_token", label: "an OAuth token (Claude Pro/Max subscription)", where: "run `claude setup-token` on a machine where you are logged in", prefix: "sk-ant-oat01-" },
    { kind: "api_key", label: "an Anthropic API key", where: "console.anthropic.com → API keys", prefix: "sk-ant-api03-" },
  ],
  codex: [{ kind: "api_key", label: "an OpenAI API key", where: "platform.openai.com/api-keys", prefix: "sk-" }],
  gemini: [{ kind: "api_key", label: "a Gemini API key", where: "aistudio.google.com/apikey", prefix: "AIza" }],
};

/** What keys and tokens are made of: base64url, no spaces, quotes or `Bearer `; and never short. */
const CREDENTIAL_TEXT_RE = /^[A-Za-z0-9_-]{20,}$/;

const MAX_CREDENTIAL_BYTES = 16 * 1024;

interface SetupFlags {
  apiKey?: boolean;
  oauthToken?: boolean;
}

export function registerSetupCommands(program: Command): void {
  program
    .command("setup")
    .description("store an agent's credential (OAuth token or API key) in the guardian's encrypted vault")
    .argument("<agent>", Object.keys(AGENT_CREDENTIALS).join(", "))
    .option("--api-key", "store an API key (read from stdin when it is not a terminal)")
    .option("--oauth-token", "store an OAuth token (claude only)")
    .addHelpText(
      "after",
      `
The credential is kept encrypted by the guardian (see \`cloister secret\`) and given to the agent
when it starts in a cloister (\`cloister start --agent NAME\`); it is never written to a config file.
Host variables such as ANTHROPIC_API_KEY are not used unless you opt in when starting.

Examples:
  cloister setup claude                                   (asks which kind, then the value without echo)
  printf %s "$ANTHROPIC_API_KEY" | cloister setup claude --api-key
  claude setup-token | tail -1 | cloister setup claude --oauth-token`,
    )
    .action((agent: string, flags: SetupFlags) => setup(agent, flags));
}

async function setup(agent: string, flags: SetupFlags): Promise<void> {
  const choices = AGENT_CREDENTIALS[agent];
  if (!choices) throw new CloisterError(`no built-in agent named ${JSON.stringify(agent)}`, `choose one of ${Object.keys(AGENT_CREDENTIALS).join(", ")}; custom agents use \`cloister secret set ${agent}.api_key\``);
  if (flags.apiKey && flags.oauthToken) throw new CloisterError("--api-key and --oauth-token exclude each other");
  const wanted: CredentialKind | undefined = flags.apiKey ? "api_key" : flags.oauthToken ? "oauth_token" : undefined;
  const choice = wanted ? choices.find((c) => c.kind === wanted) : await chooseKind(choices);
  if (!choice) throw new CloisterError(`${agent} does not take ${wanted === "oauth_token" ? "an OAuth token" : "an API key"}`, `it takes ${choices.map((c) => c.label).join(" or ")}`);
  await refuseWhileLocked();
  if (process.stdin.isTTY) process.stderr.write(`Paste ${choice.label} (${choice.where}).\n`);
  const value = (await readSecret(capitalize(choice.label), MAX_CREDENTIAL_BYTES, `cloister setup ${agent} --${choice.kind.replace("_", "-")}`)).trim();
  if (!value) throw new CloisterError("the credential is empty; nothing was changed");
  const warning = shapeWarning(agent, choice.kind, value);
  if (warning) process.stderr.write(`Warning: ${warning}\n`);
  // One credential per agent: a token stored before under the other kind would otherwise win or linger.
  const others = CREDENTIAL_KINDS.filter((k) => k !== choice.kind);
  if (process.stdin.isTTY) await confirmReplacing(agent, choice, others);
  await call("PUT", `/v1/secrets/${credentialSecretName(agent, choice.kind)}`, { value, description: `${agent}: ${choice.label}` });
  process.stderr.write(`Stored ${choice.label} for ${agent} in the vault. \`cloister start --agent ${agent}\` gives it to the agent.\n`);
  for (const kind of others) {
    const { removed } = await call<{ removed: boolean }>("DELETE", `/v1/secrets/${credentialSecretName(agent, kind)}`);
    if (removed) process.stderr.write(`Removed the ${kindWords(kind)} stored before for ${agent} (${credentialSecretName(agent, kind)}): an agent has one credential.\n`);
  }
}

/**
 * Why `value` does not look like `agent`'s credential of `kind`, or undefined when it does. QA stored
 * `notakey` as a Gemini key and `garbage` as a Claude OAuth token without a word, the latter in place
 * of a working API key. A value of the agent's other kind (an API key given as a token) is named.
 */
export function shapeWarning(agent: string, kind: CredentialKind, value: string): string | undefined {
  const choices = AGENT_CREDENTIALS[agent] ?? [];
  const choice = choices.find((c) => c.kind === kind);
  if (!choice) return undefined;
  const other = choices.find((c) => c.kind !== kind && value.startsWith(c.prefix));
  if (other) return `this looks like ${other.label}, not ${choice.label}; it was given as one all the same. If that was a slip, run \`cloister setup ${agent} --${other.kind.replace("_", "-")}\``;
  if (value.startsWith(choice.prefix) && CREDENTIAL_TEXT_RE.test(value)) return undefined;
  return `this does not look like ${choice.label}, which starts with ${choice.prefix} and holds only letters, digits, - and _; it is stored all the same (formats change). If it is wrong, run \`cloister setup ${agent}\` again`;
}

/**
 * Before a person replaces the agent's credential of the other kind, asks them (QA: the wizard
 * replaced a working API key with a mistyped token and only said so afterwards). A script, with no
 * terminal, is not asked: it chose the kind with its flag, and is told what was removed.
 */
async function confirmReplacing(agent: string, choice: CredentialChoice, others: readonly CredentialKind[]): Promise<void> {
  const { secrets } = await call<{ secrets: SecretInfo[] }>("GET", "/v1/secrets");
  const stored = others.find((kind) => secrets.some((secret) => secret.name === credentialSecretName(agent, kind)));
  if (stored === undefined) return;
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`An ${kindWords(stored)} is stored for ${agent}; an agent has one credential, so storing ${choice.label} removes it. Replace it? [y/N] `);
    if (!/^y(?:es)?$/i.test(answer.trim())) throw new CloisterError(`kept the ${kindWords(stored)} stored for ${agent}; nothing was changed`);
  } finally {
    prompt.close();
  }
}

function kindWords(kind: CredentialKind): string {
  return kind === "api_key" ? "API key" : "OAuth token";
}

/** Asks which kind of credential when the agent takes more than one (and a person is there to answer). */
async function chooseKind(choices: readonly CredentialChoice[]): Promise<CredentialChoice | undefined> {
  if (choices.length === 1) return choices[0];
  if (!process.stdin.isTTY) throw new CloisterError("say which kind of credential is on stdin", "add --api-key or --oauth-token");
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const lines = choices.map((c, i) => `  ${i + 1}) ${c.label}`).join("\n");
    const answer = (await prompt.question(`Log in with:\n${lines}\nChoice [1]: `)).trim() || "1";
    const picked = choices[Number(answer) - 1];
    if (!picked) throw new CloisterError(`no choice ${JSON.stringify(answer)}`);
    return picked;
  } finally {
    prompt.close();
  }
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
