import type { Command } from "commander";
import { resolvePaths } from "../config/paths.js";
import { CloisterError } from "../errors.js";
import { ensureGuardian, guardianCall, VAULT_DEADLINE_MS } from "../guardian/control-client.js";
import type { SecretInfo, SetResult, VaultStatus } from "../guardian/vault/vault.js";
import { printTable } from "./output.js";
import { describeHosts, headerOf, type InjectionSpec } from "../policy/injection.js";

const MAX_PASSPHRASE_BYTES = 4096;

/** A call to the guardian's vault: with the deadline of work that may wait for the vault's key. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const paths = resolvePaths();
  await ensureGuardian(paths);
  return guardianCall<T>(paths, method, path, body, { deadlineMs: VAULT_DEADLINE_MS });
}

const ABOUT = `
Secrets live in the guardian, encrypted at rest (AES-256-GCM). The key is kept in the OS keyring
(libsecret's secret-tool) when one is reachable, else in a key file only you can read; or, after
\`cloister secret passphrase\`, derived from a passphrase you give with \`cloister secret unlock\`.
No command prints a stored value.

Examples:
  cloister secret set anthropic --description "Claude API key"   (asks twice, without echo)
  printf %s "$KEY" | cloister secret set anthropic               (from a script: value on stdin)
  cloister secret list
  cloister secret rm anthropic`;

export function registerSecretCommands(program: Command): void {
  const secret = program.command("secret").description("store API keys and tokens in the guardian, encrypted; never printed").addHelpText("after", ABOUT);

  secret
    .command("list")
    .description("list stored secrets: names, dates and descriptions, never values")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const { secrets } = await call<{ secrets: SecretInfo[] }>("GET", "/v1/secrets");
      if (flags.json) return void process.stdout.write(`${JSON.stringify(secrets, null, 2)}\n`);
      if (secrets.length === 0) return void process.stderr.write("No secrets stored. Add one with `cloister secret set NAME`.\n");
      printTable(
        ["NAME", "UPDATED", "INJECTED FOR", "DESCRIPTION"],
        secrets.map((s) => [s.name, s.updatedAt.slice(0, 19).replace("T", " "), s.injectError ? `invalid rule: ${s.injectError}` : s.inject ? `${describeHosts(s.inject)} (${headerOf(s.inject.present)})` : "-", s.description ?? ""]),
      );
    });

  secret
    .command("set")
    .description("store a secret, or replace its value: typed without echo on a terminal, else read from stdin")
    .argument("<name>", "a letter, then up to 63 letters, digits, '_', '.' or '-'")
    .option("--description <text>", "what the secret is for (shown by `list`; an empty text removes it)")
    .option("--host <host[:port]>", "inject it for this host (repeat for more; port 443 when omitted): cloisters then get a placeholder", collect, [])
    .option("--header <format>", 'how it is sent, with {} for the value: "Authorization: Bearer {}", "x-api-key: {}"')
    .option("--basic <user>", "send it as the password of HTTP basic auth for this user")
    .option("--no-inject", "remove the injection rule set with --host (a built-in one applies again)")
    .option("--keep-value", "change only the description or the injection rule of a stored secret: no value is asked for")
    .addHelpText("after", INJECTION_HELP)
    .action(async (name: string, flags: { description?: string; host: string[]; header?: string; basic?: string; inject: boolean; keepValue?: boolean }) => {
      const { checkRule, checkSecretName, MAX_VALUE_BYTES } = await import("../guardian/vault/vault.js");
      checkSecretName(name);
      const inject = injectionFlags(flags);
      if (inject) checkRule(name, inject);
      if (flags.keepValue && inject === undefined && flags.description === undefined) {
        throw new CloisterError("--keep-value changes only the description or the rule, and neither was given", "add --description, --host with --header or --basic, or --no-inject");
      }
      await refuseWhileLocked();
      const value = flags.keepValue ? undefined : await readSecret(`Value for ${name}`, MAX_VALUE_BYTES, `cloister secret set ${name}`, { multiLine: true });
      const result = await call<SetResult>("PUT", `/v1/secrets/${encodeURIComponent(name)}`, { value, description: flags.description, inject });
      if (result.key) process.stderr.write(`Created the vault; its key is in ${result.key}.\n`);
      if (result.note) process.stderr.write(`Note: ${result.note}.\n`);
      process.stderr.write(result.created ? `Stored secret ${name}.\n` : value === undefined ? `Updated secret ${name}; its value is unchanged.\n` : `Replaced the value of secret ${name}.\n`);
    });

  secret
    .command("rm")
    .description("remove a stored secret")
    .argument("<name>", "its name (see `cloister secret list`)")
    .action(async (name: string) => {
      const { removed } = await call<{ removed: boolean }>("DELETE", `/v1/secrets/${encodeURIComponent(name)}`);
      if (!removed) throw new CloisterError(`no secret named ${JSON.stringify(name)}`, "see `cloister secret list`");
      process.stderr.write(`Removed secret ${name}.\n`);
    });

  secret
    .command("unlock")
    .description("give the guardian the vault's passphrase (typed without echo, or from stdin); kept in its memory only")
    .action(async () => {
      const status = await call<VaultStatus>("GET", "/v1/secrets/status");
      if (status.keySource !== "passphrase") throw new CloisterError(`the vault does not use a passphrase${status.key ? `: its key is in ${status.key}` : ""}`, "nothing to unlock");
      if (!status.locked) return void process.stderr.write("The vault is already unlocked.\n");
      const passphrase = await readSecret("Vault passphrase", MAX_PASSPHRASE_BYTES, "cloister secret unlock", { confirm: false });
      await call("POST", "/v1/secrets/unlock", { passphrase });
      process.stderr.write("The vault is unlocked until `cloister secret lock` or the guardian stops.\n");
    });

  secret
    .command("lock")
    .description("make the guardian forget the passphrase's key; secrets cannot be read until `unlock`")
    .action(async () => {
      await call("POST", "/v1/secrets/lock");
      process.stderr.write("The vault is locked.\n");
    });

  secret
    .command("status")
    .description("where the vault and its key are, whether it is locked, how many secrets it holds; the interception CA")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const status = await call<VaultStatus>("GET", "/v1/secrets/status");
      const broker = await call<{ caCertificate: string; trustBundle: string }>("GET", "/v1/broker");
      if (flags.json) return void process.stdout.write(`${JSON.stringify({ ...status, broker }, null, 2)}\n`);
      const lines = [`vault:   ${status.file}${status.exists ? ` (${status.secrets} secret${status.secrets === 1 ? "" : "s"})` : " (not created yet: the first `cloister secret set` creates it)"}`];
      if (status.key) lines.push(`key:     ${status.key}`);
      if (status.keySource === "passphrase") lines.push(`state:   ${status.locked ? "locked (run `cloister secret unlock`)" : "unlocked"}`);
      if (status.note) lines.push(`note:    ${status.note}`);
      lines.push(`CA:      ${broker.caCertificate} (signs what cloisters see of hosts a secret is injected for)`);
      lines.push(`trusted: ${broker.trustBundle} (system roots + that CA; /run/cloister/ca-bundle.pem inside)`);
      process.stdout.write(`${lines.join("\n")}\n`);
    });

  secret
    .command("passphrase")
    .description("protect the vault with a passphrase (or change it); every guardian start then needs `cloister secret unlock`")
    .option("--remove", "go back to a stored key (OS keyring or key file)")
    .addHelpText("after", "\nThe passphrase is typed twice without echo, or read from stdin (one line). Values are sealed again under the new key\nand the old key (keyring entry or key file) is discarded. Changing or removing it needs the vault unlocked.")
    .action(async (flags: { remove?: boolean }) => {
      if (flags.remove) {
        const { key } = await call<{ key: string }>("POST", "/v1/secrets/passphrase/remove");
        return void process.stderr.write(`The vault no longer uses a passphrase; its key is in ${key}.\n`);
      }
      await refuseWhileLocked();
      const passphrase = await readSecret("New vault passphrase", MAX_PASSPHRASE_BYTES, "cloister secret passphrase");
      await call("POST", "/v1/secrets/passphrase", { passphrase });
      process.stderr.write("The vault now uses a passphrase. After each guardian start, run `cloister secret unlock`.\n");
    });
}

const INJECTION_HELP = `
From stdin one trailing newline is dropped, so \`echo "$KEY" | cloister secret set NAME\` stores $KEY.

Injection: a secret with a rule never enters a cloister. Cloisters get a placeholder of the same
shape; the guardian swaps in the real value on the way out, only in the rule's header, only over
verified TLS, only to the rule's hosts. The placeholder anywhere else is blocked and audited.
The agents' credentials (\`cloister setup\`) have built-in rules (api.anthropic.com, api.openai.com,
generativelanguage.googleapis.com); --host replaces a built-in rule, e.g. for a company gateway.

Examples:
  cloister secret set anthropic
  printf %s "$OPENAI_API_KEY" | cloister secret set openai --description "Codex"
  cloister secret set github --host api.github.com --header "Authorization: Bearer {}"
  cloister secret set registry --host npm.example.com --basic deploy
  cloister secret set github --keep-value --no-inject        (the rule goes, the value stays)`;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The rule the flags ask for: a spec, null (--no-inject), or undefined (leave the rule as it is). */
function injectionFlags(flags: { host: string[]; header?: string; basic?: string; inject: boolean }): InjectionSpec | null | undefined {
  if (!flags.inject) {
    if (flags.host.length > 0 || flags.header !== undefined || flags.basic !== undefined) throw new CloisterError("--no-inject removes the rule: give it without --host, --header or --basic");
    return null;
  }
  if (flags.host.length === 0) {
    if (flags.header !== undefined || flags.basic !== undefined) throw new CloisterError("--header and --basic need --host: name the hosts the secret belongs to");
    return undefined;
  }
  return { hosts: flags.host, ...(flags.header !== undefined ? { header: flags.header } : {}), ...(flags.basic !== undefined ? { basic: flags.basic } : {}) };
}

/** Fail before asking for anything the locked vault could not take anyway. */
export async function refuseWhileLocked(): Promise<void> {
  const status = await call<VaultStatus>("GET", "/v1/secrets/status");
  if (status.locked) throw new CloisterError("the vault is locked: run `cloister secret unlock`");
}

/**
 * A value typed at the terminal without echo (twice, unless `confirm` is false), or everything on
 * stdin when it is not a terminal, minus one trailing newline. `command` is the command line being
 * run, for the example of how to pipe a value in when stdin is empty. `multiLine`: stdin may hold
 * more than one line. Else a line break left inside is refused: what the prompt takes is one line,
 * so a passphrase given with one ("typed twice" on two lines) could never be typed at it again.
 */
export async function readSecret(prompt: string, maxBytes: number, command: string, options: { confirm?: boolean; multiLine?: boolean } = {}): Promise<string> {
  if (!process.stdin.isTTY) {
    const text = await readStdin(maxBytes, command);
    if (!options.multiLine && /[\r\n]/.test(text)) {
      throw new CloisterError("stdin holds more than one line, and a line break could never be typed at the prompt; nothing was changed", `give it on one line, e.g. printf '%s\\n' "$VALUE" | ${command}`);
    }
    return text;
  }
  const first = await promptHidden(`${prompt}: `);
  if (options.confirm !== false && (await promptHidden(`${prompt} (again): `)) !== first) throw new CloisterError("the two entries differ; nothing was changed");
  return first;
}

async function readStdin(maxBytes: number, command: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Two more bytes for a trailing CR LF that is dropped below.
    if (size > maxBytes + 2) throw new CloisterError(`stdin holds more than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks)).replace(/\r?\n$/, "");
  } catch {
    // Decoding would replace the bad bytes: the stored value would silently differ from the one given.
    throw new CloisterError("stdin is not UTF-8 text", "a secret is text; encode binary values, e.g. with base64");
  }
  if (!text) throw new CloisterError("nothing on stdin", `pipe the value in, e.g. printf %s "$VALUE" | ${command}`);
  return text;
}

/** Reads one line from the terminal in raw mode, echoing nothing. Ctrl-C or Ctrl-D on an empty line cancels. */
function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  return new Promise((resolve, reject) => {
    let typed = "";
    const finish = (error?: Error) => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write("\n");
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (chunk: Buffer) => {
      for (const char of chunk.toString("utf8")) {
        if (char === "\r" || char === "\n") return finish();
        if (char === "\u0003" || (char === "\u0004" && !typed)) return finish(new CloisterError("cancelled; nothing was changed"));
        if (char === "\u007f" || char === "\b") typed = [...typed].slice(0, -1).join("");
        else if (char === "\u0015") typed = "";
        // An arrow or function key arrives as one escape sequence in one chunk: drop all of it.
        else if (char === "\u001b") return;
        else if (char >= " ") typed += char;
      }
    };
    input.on("data", onData);
  });
}
