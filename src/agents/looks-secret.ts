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
  return assignments && (assignsSecretInline(text) || setsSecretOnALine(text));
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
  if (assignsSecretInline(value)) return true;
  const header = HEADER_RE.exec(value);
  return header !== null && isSecretUnder(header[1] ?? "", header[2] ?? "");
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
