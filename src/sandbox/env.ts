import { CloisterError } from "../errors.js";
import { AGENT_BIN_PATH, NODE_TRUST_PATH, TRUST_BUNDLE_PATH } from "./bwrap/mounts.js";

/**
 * The environment of processes in a cloister: built from an allowlist, never inherited wholesale,
 * so host tokens, agent sockets (SSH_AUTH_SOCK, DBUS_SESSION_BUS_ADDRESS) and display variables
 * stay outside by construction.
 */

/** Host variables that describe the terminal and locale, and carry no secrets. */
const PASSTHROUGH = ["TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"];
const PASSTHROUGH_PREFIXES = ["LC_"];

export const SANDBOX_PATH = "/run/cloister/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface SandboxEnvInput {
  hostEnv: NodeJS.ProcessEnv;
  cloisterName: string;
  user: string;
  home: string;
  shell: string;
  /** Extra host variable names to pass through (config `sandbox.env`). */
  extraNames: readonly string[];
  /** Proxy URL inside the cloister (with this cloister's token), absent without network. */
  proxyUrl?: string;
  /** The guardian's trust bundle is mounted at TRUST_BUNDLE_PATH: point TLS clients at it. */
  trustBundle?: boolean;
  /** Node's extra certificates are mounted at NODE_TRUST_PATH (cloisters started by older versions have only the bundle). */
  nodeTrust?: boolean;
  /** `--env K=V` values from the command line: applied last. */
  explicit: Readonly<Record<string, string>>;
  /** The cloister was set up for an agent: its launcher comes first on PATH. */
  agentBin?: boolean;
}

export function sandboxEnv(input: SandboxEnvInput): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.hostEnv)) {
    if (value === undefined) continue;
    const allowed = PASSTHROUGH.includes(name) || PASSTHROUGH_PREFIXES.some((p) => name.startsWith(p)) || input.extraNames.includes(name);
    if (allowed) env[name] = value;
  }
  Object.assign(env, {
    HOME: input.home,
    USER: input.user,
    LOGNAME: input.user,
    SHELL: input.shell,
    PATH: input.agentBin ? `${AGENT_BIN_PATH}:${SANDBOX_PATH}` : SANDBOX_PATH,
    TMPDIR: "/tmp",
    CLOISTER: "1",
    CLOISTER_NAME: input.cloisterName,
  });
  env.TERM ??= "xterm-256color";
  if (input.proxyUrl) Object.assign(env, proxyEnv(input.proxyUrl));
  if (input.trustBundle) Object.assign(env, trustEnv(input.nodeTrust === true));
  return Object.assign(env, input.explicit);
}

/** Both spellings: curl reads lower case (and ignores upper-case HTTP_PROXY), most others upper case. */
function proxyEnv(proxyUrl: string): Record<string, string> {
  const noProxy = "localhost,127.0.0.1,::1";
  const vars: Record<string, string> = {};
  for (const [name, value] of [
    ["HTTP_PROXY", proxyUrl],
    ["HTTPS_PROXY", proxyUrl],
    ["ALL_PROXY", proxyUrl.replace(/^http:/, "socks5h:")],
    ["NO_PROXY", noProxy],
  ] as const) {
    vars[name] = value;
    vars[name.toLowerCase()] = value;
  }
  // Node's own fetch and http(s) ignore the variables above unless told (Node 22.21 and 24.5 on;
  // older Node ignores this too, and needs a proxy agent such as undici's EnvHttpProxyAgent).
  vars.NODE_USE_ENV_PROXY = "1";
  vars.GIT_SSH_COMMAND = sshThroughProxy(proxyUrl);
  // hostexec's channel to the guardian: its own name, so a tool that rewrites HTTP_PROXY cannot cut it.
  vars.CLOISTER_PROXY = proxyUrl;
  return vars;
}

/**
 * Every TLS stack in the cloister trusts the guardian's bundle (system roots + its interception CA),
 * which is mounted over the system bundle too; these cover tools that carry their own roots. Node adds
 * NODE_EXTRA_CA_CERTS to the roots built into it, so it gets only what those lack (parsing the whole
 * bundle cost every node process ~90 ms).
 */
function trustEnv(nodeTrust: boolean): Record<string, string> {
  const names = ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO", "PIP_CERT", "DENO_CERT"];
  const env = Object.fromEntries(names.map((name) => [name, TRUST_BUNDLE_PATH]));
  if (nodeTrust) env.NODE_EXTRA_CA_CERTS = NODE_TRUST_PATH;
  return env;
}

/**
 * ssh (and git over ssh) has no proxy setting of its own: a ProxyCommand opens the connection as a
 * CONNECT tunnel through the guardian, which judges host:22 like any other destination.
 */
function sshThroughProxy(proxyUrl: string): string {
  const url = new URL(proxyUrl);
  const auth = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  return `ssh -o ProxyCommand='socat - PROXY:${url.hostname}:%h:%p,proxyport=${url.port},proxyauth=${auth}'`;
}

/** What a variable set for a cloister's commands may be called (`--env NAME=VALUE`, the library's `env`). */
export const VARIABLE_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses `--env K=V` (or `--secret K=NAME`) values; K must be a valid variable name. */
export function parseEnvAssignments(values: readonly string[], flag = "--env"): Record<string, string> {
  const result: Record<string, string> = {};
  for (const item of values) {
    const eq = item.indexOf("=");
    const name = eq > 0 ? item.slice(0, eq) : "";
    if (!VARIABLE_NAME_RE.test(name)) {
      throw new CloisterError(`invalid ${flag} ${JSON.stringify(item)}: expected NAME=VALUE with NAME made of letters, digits and _`);
    }
    result[name] = item.slice(eq + 1);
  }
  return result;
}
