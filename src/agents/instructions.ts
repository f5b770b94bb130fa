/**
 * What cloister tells an agent about where it runs, added to the agent's user-level instructions
 * file (CLAUDE.md, AGENTS.md, GEMINI.md) between markers, so it is replaced, never added twice.
 */

const BEGIN = "<!-- cloister:begin (written by cloister on each start; edits here are replaced) -->";
const END = "<!-- cloister:end -->";

export function cloisterInstructions(agentName: string, network: boolean): string {
  const networkText = network
    ? `- Network: every connection goes through cloister's proxy (HTTP_PROXY/HTTPS_PROXY are set;
  tools that ignore them cannot reach anything: Node.js's own fetch and https honor them from
  Node 22.21 on, with NODE_USE_ENV_PROXY=1, which is set; older Node needs a proxy agent such as
  undici's EnvHttpProxyAgent). Hosts on the allowlist work (AI APIs, package
  registries, documentation). A host that is not allowed gets HTTP 403 with a body starting
  \`cloister:\`, which says why. That is a policy decision, not an outage: do not retry, do not look
  for another route. For some hosts a human is asked first and the request waits; if the answer is
  no, or nobody answers, it is a 403 too. Tell the user which host you needed and why, so they
  can allow it (\`cloister allow HOST\`) if they agree. Only HTTP(S), SOCKS5 and ssh through the
  proxy work: no UDP, no raw DNS.`
    : `- Network: none. This cloister was started without network; nothing outside it can be reached.`;
  const hostexecText = network
    ? `- \`hostexec CMD ARGS...\` runs an approved command on the user's host, in the project
  directory: for what cannot work in here, such as \`hostexec git push\`, \`hostexec gh pr view 12\`,
  \`hostexec docker compose ps\`. The command is an argument list (no shell: no pipes, \`&&\`, \`$(...)\`
  or globbing). A rule allows or refuses it, or a human decides while it waits; exit code 126 means
  refused: do not retry the same command, tell the user what you wanted to run and why. Use it
  rarely: everything that can run inside the cloister should run inside.`
    : `- \`hostexec\` is not available without network.`;
  return `${BEGIN}
# You are running in a cloister

You (${agentName}) run inside a cloister: a sandbox on the user's machine. Inside it you may work
freely, without asking for permission; the sandbox is the boundary.

- The project is at /work (read-write). Work there. Some paths in it are read-only on purpose
  (.git/hooks, .git/config, editor and agent settings, shell rc files): do not try to change them.
- Nothing outside /work is kept: HOME, /tmp and installed packages outside /work may disappear
  when the cloister stops. Anything worth keeping belongs in /work.
- The user's host files, credentials and sockets (ssh-agent, docker, D-Bus) are not here, and
  cannot be reached from here.
${networkText}
${hostexecText}
${END}
`;
}

/** `existing` with the cloister block in it: replaced where it already is, else appended. */
export function withInstructions(existing: string, block: string): string {
  const start = existing.indexOf(BEGIN);
  const end = start === -1 ? -1 : existing.indexOf(END, start);
  if (start !== -1 && end !== -1) {
    return existing.slice(0, start) + block.trimEnd() + existing.slice(end + END.length);
  }
  const separator = existing === "" || existing.endsWith("\n\n") ? "" : existing.endsWith("\n") ? "\n" : "\n\n";
  return `${existing}${separator}${block}`;
}
