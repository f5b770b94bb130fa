/**
 * Rules for environment variable names in config: which host variables may be passed into a sandbox
 * by name (never secret-bearing ones), and which names may carry an agent's credential.
 */
import { text } from "./schema-kit.js";

export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Host environment variables that must not be passed into a sandbox by name. Secrets reach a sandbox
 * only through the guardian (which can scope them to hosts and audit their use), never by inheritance.
 * Matching is case-insensitive; substrings are deliberately broad (a false refusal is one rename away,
 * a leaked token is not).
 */
export const REFUSED_ENV_SUBSTRINGS: readonly string[] = [
  "TOKEN",
  "SECRET",
  "PASSWORD",
  "PASSWD",
  "PASSPHRASE",
  "KEY",
  "CREDENTIAL",
  "PRIVATE",
  "COOKIE",
];
export const REFUSED_ENV_PREFIXES: readonly string[] = ["AWS_", "CLOISTER_"];
export const REFUSED_ENV_NAMES: readonly string[] = [
  "SSH_AUTH_SOCK",
  "GPG_AGENT_INFO",
  "KRB5CCNAME",
  "DATABASE_URL",
  "NETRC",
  // Set by cloister inside the sandbox to reach the guardian; a host value would bypass or break it.
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "ALL_PROXY",
  "NO_PROXY",
];

/** Why an env name is refused, or undefined when it may be passed through. */
export function envNameProblem(name: string): string | undefined {
  if (!ENV_NAME_RE.test(name)) {
    return `"${name}" is not an environment variable name (letters, digits and _, not starting with a digit); list names only, never values`;
  }
  const upper = name.toUpperCase();
  const why = secretReason(upper);
  if (why === undefined) return undefined;
  if (isCloisterOwned(upper)) return `${name} is set by cloister inside the sandbox and cannot be passed through`;
  return `${name} is refused because it ${why}: secrets never pass into a sandbox through its environment; store it in the guardian's vault with the hosts it is for (cloister secret set SECRET --host HOST --header "Authorization: Bearer {}") and start the cloister with --secret ${name}=SECRET: it then holds a placeholder, which the guardian swaps for the value only on the way to those hosts; an agent's key or token: cloister setup AGENT (docs/secrets.md)`;
}

function isCloisterOwned(upper: string): boolean {
  return upper.startsWith("CLOISTER_") || upper.endsWith("_PROXY");
}

/**
 * Why a variable cannot carry an agent's credential (config `agents.NAME.credential.env`): such a
 * name is meant to hold a secret, so only its spelling and cloister's own variables are refused.
 */
export function credentialEnvProblem(name: string): string | undefined {
  if (!ENV_NAME_RE.test(name)) return `"${name}" is not an environment variable name (letters, digits and _, not starting with a digit)`;
  const upper = name.toUpperCase();
  if (isCloisterOwned(upper) || ["PATH", "HOME", "USER", "SHELL", "TMPDIR"].includes(upper)) {
    return `${name} is set by cloister inside the sandbox and cannot carry a credential`;
  }
  return undefined;
}

function secretReason(upper: string): string | undefined {
  if (REFUSED_ENV_NAMES.includes(upper)) return "is a known secret-bearing or cloister-owned variable";
  const prefix = REFUSED_ENV_PREFIXES.find((p) => upper.startsWith(p));
  if (prefix) return `starts with ${prefix}`;
  const part = REFUSED_ENV_SUBSTRINGS.find((s) => upper.includes(s));
  if (part) return `contains ${part}`;
  return undefined;
}

export const envName = text("an environment variable name").superRefine((name, ctx) => {
  const problem = envNameProblem(name);
  if (problem) ctx.addIssue({ code: "custom", message: problem, input: name });
});

