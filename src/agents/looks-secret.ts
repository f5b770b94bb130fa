/**
 * What counts as a secret in an agent's config file: a text value under a key that says it holds one
 * (`GITHUB_TOKEN`, `X-Corp-Key`, `password`), a value of a known secret's shape under any key
 * (`sk-…`, `ghp_…`, a private key block, a JWT), or a value that carries a secret assignment of its
 * own (`--token=…`, `GITHUB_TOKEN=… ./run.sh`, `X-Api-Key: …`). Heuristics that err on the side of
 * leaving out: a value left out costs the agent a setting, a value carried costs a secret.
 */

/** Key names that say their value is a secret, anywhere in the name (`githubtoken`, `ANTHROPIC_AUTH_TOKEN`). */
const SECRET_KEY_RE = /token|secret|passw|api[-_]?key|credential|authorization|cookie|bearer|private[-_]?key|access[-_]?key/i;

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
];

/** `NAME=value` inside a value (`--api-key=…`, `TOKEN=… cmd`, `?token=…`), quoted or not. */
const ASSIGNMENT_RE = /(?:^|[\s"'?&;])-{0,2}([A-Za-z][A-Za-z0-9_.-]*)=("[^"]*"|'[^']*'|[^\s"'&;]*)/g;
/** A whole value that is a header line (`X-Api-Key: …`, as in `--header` arguments). */
const HEADER_RE = /^([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(\S.*)$/s;
/** A value that only names a variable (`bearer_token_env_var = "GITHUB_TOKEN"`). */
const VARIABLE_NAME_RE = /^[A-Z_][A-Z0-9_]*$/;
/** A value that refers to a variable instead of holding its value (`${GITHUB_TOKEN}`, `Bearer $TOKEN`), as Claude Code's and Gemini CLI's settings allow; a `${VAR:-default}` is judged, its default could be a secret. */
const VARIABLE_REFERENCE_RE = /^(?:(?:Bearer|Basic|token)\s+)?\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$/;
/** Codex's maps whose values name variables, whatever their keys say (`env_http_headers = { "X-Api-Key" = "MY_KEY" }`). */
const VARIABLE_MAPS = new Set(["env_http_headers"]);

/** Whether a value under `key` (or, in a list, under the list's key or option) is to be left out. */
export function looksSecret(key: string, value: unknown): boolean {
  if (typeof value !== "string" || value === "") return false;
  return isSecretUnder(key, value) || SECRET_SHAPES.some((shape) => shape.test(value)) || carriesSecretAssignment(value);
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
  return SECRET_KEY_RE.test(key) || last === "pat" || (last === "key" && parts.length > 1);
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
  for (const [, name = "", assigned = ""] of value.matchAll(ASSIGNMENT_RE)) {
    if (isSecretUnder(name, assigned.replace(/^(["'])(.*)\1$/s, "$2"))) return true;
  }
  const header = HEADER_RE.exec(value);
  return header !== null && isSecretUnder(header[1] ?? "", header[2] ?? "");
}

/** A key's words, lower case: `bearerTokenEnvVar` and `BEARER_TOKEN_ENV_VAR` → bearer, token, env, var. */
function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== "");
}
