/**
 * What counts as a secret in an agent's config file: a text value under a key that says it holds one
 * (`GITHUB_TOKEN`, `X-Corp-Key`, `password`), a value of a known secret's shape under any key
 * (`sk-…`, `ghp_…`, a private key block, a JWT), or a value that carries a secret assignment of its
 * own (`--token=…`, `GITHUB_TOKEN=… ./run.sh`, `X-Api-Key: …`); and for files that are not parsed,
 * whether their text holds one. Heuristics that err on the side of leaving out: a value left out
 * costs the agent a setting, a value carried costs a secret.
 */

/** Key names that say their value is a secret, anywhere in the name (`githubtoken`, `ANTHROPIC_AUTH_TOKEN`, `SLACK_WEBHOOK_URL`). */
const SECRET_KEY_RE = /token|secret|passw|passphrase|api[-_]?key|credential|authorization|cookie|bearer|private[-_]?key|access[-_]?key|webhook/i;

/** The shapes of vendors' keys and tokens, and of key material, wherever they stand in a value. */
const SECRET_SHAPES: readonly RegExp[] = [
  /(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{20,}/, // OpenAI (sk-proj-), Anthropic (sk-ant-) and others
  /(?<![A-Za-z0-9])gh[opsur]_[A-Za-z0-9]{20,}/, // GitHub tokens
  /(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{20,}/,
  /(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{16,}/, // GitLab
  /(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,}/, // Slack
  /(?<![A-Za-z0-9])AIza[A-Za-z0-9_-]{30,}/, // Google API keys
  /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/, // AWS access key ids
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/,
  /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./, // a JWT: a JSON header, a JSON payload
  /\b(?:Bearer|Basic)\s+(?=[A-Za-z._~+/-]*\d)[A-Za-z0-9._~+/-]{12,}/, // with a digit: not "Bearer authentication"
  // Webhook URLs whose path is the secret: whoever has one can post as the integration.
  /https:\/\/hooks\.slack\.com\/(?:services|workflows|triggers)\/[A-Za-z0-9_/-]{8,}/,
  /https:\/\/(?:[a-z]+\.)?discord(?:app)?\.com\/api\/webhooks\/\d+\/[A-Za-z0-9_-]{8,}/,
  /https:\/\/[a-z0-9-]+\.webhook\.office\.com\/webhookb2\/[^\s"']{8,}/,
];

/** A URL's password (`https://user:PASSWORD@host`); the part before it is group 1. */
const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*):[^\s/?#]+@/i;

/** `NAME=value` inside a value (`--api-key=…`, `TOKEN=… cmd`, `?token=…`), quoted or not; group 1 is an option's dashes. */
const ASSIGNMENT_RE = /(?:^|[\s"'?&;])(-{0,2})([A-Za-z][A-Za-z0-9_.-]*)=("[^"]*"|'[^']*'|[^\s"'&;]*)/g;
/** A line of a file that sets a name (`token = "…"`, `token: …`, `export TOKEN=…`, `- "token": …`), as INI, YAML, .env and shell files do. */
const LINE_ASSIGNMENT_RE = /^[ \t]*(?:export[ \t]+|-[ \t]+)?(["']?)([A-Za-z_][A-Za-z0-9_.-]*)\1[ \t]*[:=][ \t]*(.*?)[ \t]*,?[ \t]*$/gm;
/** A line's value that sets nothing: YAML's and TOML's empty and boolean values. */
const NO_VALUE_RE = /^(?:null|~|true|false)$/i;
/** A single-letter option's value that looks like a random key: long, letters and digits, no path or name punctuation. */
const RANDOM_RE = /^(?=\D*\d)(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9_+=-]{20,}$/;
/** A whole value that is a header line (`X-Api-Key: …`, as in `--header` arguments). */
const HEADER_RE = /^([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(\S.*)$/s;
/** A value that only names a variable (`bearer_token_env_var = "GITHUB_TOKEN"`). */
const VARIABLE_NAME_RE = /^[A-Z_][A-Z0-9_]*$/;
/**
 * A value that refers to a variable instead of holding its value (`${GITHUB_TOKEN}`, `Bearer $TOKEN`), as
 * Claude Code's and Gemini CLI's settings allow, or that a shell computes (`$1`, `$(cat …)`, in hook
 * scripts); a `${VAR:-default}` is judged, its default could be a secret.
 */
const VARIABLE_REFERENCE_RE = /^(?:(?:Bearer|Basic|token)\s+)?\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\}|\d|\(.*)$/s;
/**
 * A shell word, its quoted parts and command substitutions kept whole (`-H"X-Api-Key: …"`,
 * `"$(cat f)"`), or one of the characters that end a command (`;`, `|`, `&&`, a redirection).
 */
const SHELL_WORD_RE = /(?:"(?:[^"\\]|\\.)*"|'[^']*'|\$\([^)]*\)|\\.|[^\s"'\\;&|()<>`])+|[;&|()<>`]/g;
/** The quoting of a shell word, taken off: its quotes, and backslashes before a character. */
const SHELL_QUOTING_RE = /"((?:[^"\\]|\\.)*)"|'([^']*)'|\\(.)/gs;
/** Words before a command's program (`sudo curl`, `if curl …; then`, `env X=1 curl`). */
const LEADING_WORDS = new Set(["sudo", "env", "exec", "command", "nohup", "nice", "time", "!", "if", "then", "elif", "else", "do", "while", "until"]);
/** Options that take an HTTP header (curl, wget, HTTPie-likes): judged by the header's name. */
const HEADER_OPTIONS = new Set(["-H", "--header", "--proxy-header"]);
/** curl's options that take `user:password`. */
const CURL_USER_OPTIONS = new Set(["-u", "--user", "-U", "--proxy-user"]);
/**
 * Programs whose single-letter option is a password: mysql's `-pSECRET` (attached only: `-p` alone
 * prompts), `sshpass -p SECRET`, `redis-cli -a SECRET`. Elsewhere `-p` is a port or a path.
 */
const PASSWORD_LETTERS: readonly { program: RegExp; option: string; separate: boolean }[] = [
  { program: /^(?:mysql|mariadb)[a-z-]*$/, option: "-p", separate: false },
  { program: /^sshpass$/, option: "-p", separate: true },
  { program: /^redis-cli$/, option: "-a", separate: true },
];
/** Codex's maps whose values name variables, whatever their keys say (`env_http_headers = { "X-Api-Key" = "MY_KEY" }`). */
const VARIABLE_MAPS = new Set(["env_http_headers"]);

/** Whether a value under `key` (or, in a list, under the list's key or option) is to be left out. */
export function looksSecret(key: string, value: unknown): boolean {
  if (typeof value !== "string" || value === "") return false;
  return isSecretUnder(key, value) || SECRET_SHAPES.some((shape) => shape.test(value)) || carriesSecretAssignment(value);
}

/**
 * Whether an option's value in an argument list is to be left out (`["--auth", X]`). A long option is
 * judged as a key is (`--token`, `--api-key`), and a bare `--key` and any `--auth…` hold secrets too.
 */
export function looksSecretArgument(option: string, value: unknown): boolean {
  return looksSecret(option, value) || (typeof value === "string" && isSecretOptionValue(option, value));
}

/**
 * Whether a file's text holds a secret: a value of a known secret's shape or a URL's password
 * anywhere; with `assignments`, also a secret set by name, on a line of its own (`token = "…"`,
 * `token: …`, `export TOKEN=…`) or inline (`TOKEN=… ./run.sh`, `--token=…`). Prose is judged by
 * shapes only: a line "Token: …" in Markdown is a sentence, not a setting.
 */
export function textHoldsSecret(text: string, assignments: boolean): boolean {
  if (SECRET_SHAPES.some((shape) => shape.test(text)) || URL_PASSWORD_RE.test(text)) return true;
  return assignments && (assignsSecretInline(text) || setsSecretOnALine(text) || commandLinePassesSecret(text));
}

/** `text` without the passwords of its URLs (`https://user@host`). */
export function withoutUrlPasswords(text: string): string {
  return text.replace(new RegExp(URL_PASSWORD_RE, "gi"), "$1@");
}

/**
 * Whether the values of a mapping under `key` name variables, so that their own keys say nothing
 * about them. Only the maps known to: a `vars` mapping elsewhere may hold values, not names.
 */
export function holdsVariableNames(key: string): boolean {
  return VARIABLE_MAPS.has(key);
}

/**
 * A key that says its value is a secret: a secret word anywhere in it, or a last word `pat`, or `key`
 * after another word (`OPENAI_KEY`, `X-Corp-Key`, `apiKey`). A bare `key` (Claude's keybindings) and
 * words that only end in "key" (`keybindings`, `hotkey`, `monkey`) are not.
 */
function isSecretKey(key: string): boolean {
  const parts = words(key);
  const last = parts.at(-1);
  // `auth` as a word of its own (NPM_AUTH, npm's `_auth`, `basicAuth`), not in `author`, `oauth_client_id`, `authType`.
  return SECRET_KEY_RE.test(key) || last === "pat" || last === "auth" || (last === "key" && parts.length > 1);
}

/**
 * An option's value: a long option as a key, or a bare `--key`, or `--auth…` (`--auth-header`). A
 * single letter means too many things to say (`-k` is curl's `--insecure`, `-p` a port or a
 * password), so its value is judged by what it looks like: a long random-looking string.
 */
function isSecretOptionValue(option: string, value: string): boolean {
  if (value === "" || isHarmless(option, value)) return false;
  if (option.length === 1) return RANDOM_RE.test(value);
  const parts = words(option);
  return isSecretKey(option) || parts[0] === "auth" || (parts.length === 1 && parts[0] === "key");
}

function isSecretUnder(key: string, value: string): boolean {
  return value !== "" && isSecretKey(key) && !isHarmless(key, value);
}

/** A secret key's value that holds no secret: a variable's name where the key says so, a variable reference, a count of tokens. */
function isHarmless(key: string, value: string): boolean {
  const parts = words(key);
  if (namesVariable(parts) && VARIABLE_NAME_RE.test(value)) return true;
  // CLAUDE_CODE_MAX_OUTPUT_TOKENS = "32000", `--max-tokens 4000`: a number of tokens, not a token.
  return VARIABLE_REFERENCE_RE.test(value) || (parts.at(-1) === "tokens" && /^\d+$/.test(value));
}

/** Keys that name a variable: `bearer_token_env_var`, `token_var`, `env_vars`, codex's `env_key`. */
function namesVariable(parts: readonly string[]): boolean {
  const last = parts.at(-1);
  return last === "var" || last === "vars" || (last === "key" && parts.at(-2) === "env");
}

/** Judged by the name assigned to, not again as a whole (the shapes were looked for in the whole value already). */
function carriesSecretAssignment(value: string): boolean {
  return assignsSecretInline(value) || isSecretHeader(value) || commandLinePassesSecret(value);
}

/** A header line whose name says it holds a secret (`X-Api-Key: …`, `Authorization: Basic …`). */
function isSecretHeader(value: string): boolean {
  const header = HEADER_RE.exec(value);
  return header !== null && isSecretUnder(header[1] ?? "", header[2] ?? "");
}

/**
 * Whether a command in `text` (a hook script, a hook's command in settings.json) passes a secret as
 * an argument: a secret header anywhere in the line (`curl -s -H "X-Api-Key: …"`), a long secret
 * option's separate value (`--password hunter2`, `--api-key …`), curl's `-u user:password`, or a
 * program's password letter (`mysql -pSECRET`). QA found these carried while `--password=…` and a
 * header at the start of a line were not. Values the shell computes (`"$PASS"`) hold no secret.
 */
function commandLinePassesSecret(text: string): boolean {
  for (const words of commands(text)) {
    const program = programOf(words);
    if (words.some((word, i) => optionPassesSecret(program, word, words[i + 1]))) return true;
  }
  return false;
}

/** Each simple command's words, unquoted: lines (a backslash-newline continues one) split at `;`, `|`, `&`, redirections. */
function* commands(text: string): Generator<string[]> {
  for (const line of text.replace(/\\\r?\n/g, " ").split("\n")) {
    let words: string[] = [];
    for (const [token] of line.matchAll(SHELL_WORD_RE)) {
      if (/^[;&|()<>`]$/.test(token)) {
        yield words;
        words = [];
      } else words.push(token.replace(SHELL_QUOTING_RE, (_, double?: string, single?: string, escaped?: string) => double ?? single ?? escaped ?? ""));
    }
    yield words;
  }
}

/** The name of a command's program (`/usr/bin/curl` → curl), past assignments and wrappers. */
function programOf(words: readonly string[]): string {
  const program = words.find((word) => !LEADING_WORDS.has(word) && !/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)) ?? "";
  return program.slice(program.lastIndexOf("/") + 1);
}

/** Whether `word`, an option of `program`, passes a secret: in itself (`-pSECRET`, `--user=a:b`) or as the option of `next`. */
function optionPassesSecret(program: string, word: string, next: string | undefined): boolean {
  const option = /^(--[A-Za-z0-9][A-Za-z0-9_.-]*)=(.*)$/s.exec(word) ?? /^(-[A-Za-z])(.+)$/s.exec(word);
  const name = option?.[1] ?? word;
  const attached = option?.[2];
  const separate = next !== undefined && !next.startsWith("-") ? next : undefined;
  const value = attached ?? separate;
  if (value === undefined) return false;
  if (HEADER_OPTIONS.has(name)) return isSecretHeader(value);
  if (program === "curl" && CURL_USER_OPTIONS.has(name)) return value.includes(":") && isSecretUnder("password", value.slice(value.indexOf(":") + 1));
  const letter = PASSWORD_LETTERS.find((entry) => entry.program.test(program) && entry.option === name);
  if (letter) return isSecretUnder("password", letter.separate ? value : (attached ?? ""));
  // `--password=…` is an assignment, judged as one (assignsSecretInline): here the separate value.
  return name.startsWith("--") && attached === undefined && isSecretOptionValue(name.slice(2), value);
}

function assignsSecretInline(value: string): boolean {
  for (const [, dashes = "", name = "", assigned = ""] of value.matchAll(ASSIGNMENT_RE)) {
    const unquoted = unquote(assigned);
    if (dashes === "" ? isSecretUnder(name, unquoted) : isSecretOptionValue(name, unquoted)) return true;
  }
  return false;
}

function setsSecretOnALine(text: string): boolean {
  for (const [, , name = "", assigned = ""] of text.matchAll(LINE_ASSIGNMENT_RE)) {
    const unquoted = unquote(assigned);
    if (!NO_VALUE_RE.test(unquoted) && isSecretUnder(name, unquoted)) return true;
  }
  return false;
}

function unquote(value: string): string {
  return value.replace(/^(["'])(.*)\1$/s, "$2");
}

/** A key's words, lower case: `bearerTokenEnvVar` and `BEARER_TOKEN_ENV_VAR` → bearer, token, env, var. */
function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== "");
}
