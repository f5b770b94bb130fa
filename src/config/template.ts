/**
 * The global config file cloister writes on first use. Every key is present with its default value,
 * so the file doubles as the reference; a unit test checks that parsing it yields exactly the schema
 * defaults, so the two cannot drift apart.
 */
export const GLOBAL_CONFIG_TEMPLATE = `# Cloister global configuration.
# Every key below is set to its default. Unknown keys are errors (a misspelt setting that is
# silently ignored would be a protection that silently does not apply).
# Per-project settings live next to this file in projects/<name>.yaml (path, refs, sandbox, limits,
# proxy); a project's limits override these, its sandbox and proxy lists are added to these.

defaults:
  # Shell for \`cloister start\` (falls back to /bin/sh if it is missing inside the sandbox).
  shell: /bin/bash
  # false = every cloister starts as if given --no-network.
  network: true
  # The agent that \`--agent\` without a name opens (e.g. claude, codex, gemini, or one declared
  # under agents:), and that \`cloister start\` also sets up beside the shell; none = no agent.
  agent: none

limits:
  # memory and cpu need a cgroup (see \`cloister doctor\`): where cloister has none, --memory and
  # --cpu are refused, and a value set here other than the default is warned about at each launch.
  # Memory of the whole cloister. A size: a number with an optional unit, case-insensitive:
  # B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000); or none.
  memory: 8GiB
  # Most processes (and threads) alive at once: a whole number, or none.
  pids: 4096
  # A cap on CPU time as a percentage of one core: 100% = one core, 200% = two cores; or none.
  # Capped or not, a cloister runs at the CPU priority of nice 10: when the machine is busy, the
  # guardian and your own programs come first; with none, an idle machine's every core is its to use.
  cpu: none
  # Size cap of each private tmpfs (/tmp, /var/tmp, /dev/shm). A size; none is not allowed.
  # (/run is always small and fixed.)
  tmpfs: 1GiB
  # Default --timeout for \`cloister run\`: a duration such as 90s, 5m or 1h30m; or none.
  timeout: none

sandbox:
  # Extra paths inside the project that the agent may read but never change, relative to the
  # project root, e.g. ["Makefile", "scripts/ci/"]. (.git/hooks, .git/config, shell rc files and
  # agent config dirs are always protected.)
  protect: []
  # Extra environment variable NAMES passed through from the host, e.g. [LANG, TERM].
  # Never values; names that look secret-bearing (TOKEN, SECRET, PASSWORD, KEY, AWS_*, ...) are
  # refused: secrets reach a cloister only through the guardian.
  env: []
  # Extra read-only host paths: a list of {src: /abs/host/path, dest: /abs/path/in/sandbox}.
  # dest is never /work, /refs, /run, /proc or /dev, nor below them (the cloister's own places).
  mounts: []

proxy:
  # Every connection out of a cloister goes through the guardian's proxy, which decides by these
  # rules. A rule is a host name (example.com), a wildcard (*.example.com = any subdomain, at any
  # depth, but not example.com itself: list both to get both) or an IP address (10.1.2.3), with an
  # optional port or ports (example.com:8443, example.com:22,443); without a port an allow rule
  # means 80 and 443, and a deny rule every port of that host. Names resolving to loopback,
  # private, link-local or metadata addresses are refused unless the rule says so: write
  # {rule: db.internal:5432, private: true}.
  # A deny in any tier (global, project, session) beats every allow. A host on no list is held for
  # a human to answer, or refused: see \`unlisted\` below.
  # Projects add their own lists in projects/<name>.yaml; \`cloister allow|deny\` writes to
  # decisions/. See what decides a host with \`cloister policy explain HOST[:PORT]\`.
  allow:
    # AI APIs
    - api.anthropic.com
    - api.openai.com
    - generativelanguage.googleapis.com
    # Package registries
    - registry.npmjs.org
    - registry.yarnpkg.com
    - proxy.golang.org
    - sum.golang.org
    - pypi.org
    - files.pythonhosted.org
    - crates.io
    - static.crates.io
    - index.crates.io
    - rubygems.org
    - index.rubygems.org
    # Documentation
    - golang.org
    - pkg.go.dev
    - go.dev
    - docs.rs
    - doc.rust-lang.org
    - docs.python.org
    - developer.mozilla.org
    - devdocs.io
    - stackoverflow.com
    - man7.org
    - cppreference.com
    - en.cppreference.com
    - www.typescriptlang.org
    - nodejs.org
    - docs.docker.com
    - kubernetes.io
    - docs.npmjs.com
  deny: []
  # Host name -> IP address, applied by the guardian (like curl --resolve); a mapped name counts as
  # opted in to the address it is mapped to. Example: {staging.example.com: 10.0.0.5}
  resolve: {}
  # Time to establish a connection to the destination.
  connect_timeout: 10s
  # A connection (or tunnel) with no traffic either way for this long is closed.
  idle_timeout: 10m
  # Connections open at once per cloister; more are refused so one cloister cannot starve others.
  max_connections: 1024
  # Size of a request's header section, and how many header lines it may have.
  max_header_size: 32KiB
  max_headers: 100
  # A host on no list: ask = hold the connection while a human decides in the approval UI
  # (\`cloister ui\`) or with \`cloister approve|deny\`; deny = refuse at once. Nobody answering
  # within approval_timeout is a denial, never an allow.
  unlisted: ask
  approval_timeout: 60s
  # Audit records one cloister may cause per second, after a burst of audit_burst at once. Past
  # that, its next connections and requests wait their turn (none is dropped, each still gets its
  # record), so a cloister flooding the proxy cannot rotate the audit history away.
  audit_rate: 50
  audit_burst: 5000
  # The guardian intercepts TLS (with its own CA, which cloisters trust) only for hosts a stored
  # secret belongs to (\`cloister secret list\`), to swap the cloister's placeholder for the real
  # value. Hosts listed here are intercepted as well, without a secret, so a placeholder sent
  # there is caught. Everything else is tunnelled untouched.
  inspect: []
  # An extra CA certificate (PEM file) trusted, besides the system roots, when the guardian
  # connects to an intercepted host; e.g. a company's TLS gateway. null = system roots only.
  upstream_ca: null

audit:
  # The audit log (one signed, hash-chained JSON record per decision) rotates at this size,
  # keeping this many old files; \`cloister guardian reload\` applies a change. Check the log
  # with \`cloister audit verify\`.
  max_size: 64MiB
  keep: 10

hostexec:
  # \`hostexec CMD ARGS...\` inside a cloister asks the guardian to run CMD on the host, in the
  # project directory, without a shell, with a clean environment. Rules are checked in order (these,
  # then the project's) against the WHOLE argv; the first match decides; no match = deny.
  #   allow: run at once   ask: a human decides (approval UI / \`cloister approve\`)   deny: refuse
  # A rule is a list of argument patterns: text = exactly that argument, "*" = any one argument,
  # "**" = any number of arguments, {one_of: [a, b]}, {regex: 'RE'} (whole argument); or
  # {regex: 'RE'} over the whole command line in shell quoting. Wrappers (sh -c, env, xargs, ...),
  # VAR=value and git's exec options (-c, -C, --git-dir, --upload-pack, ...) never match a
  # wildcard: an allow rule must name them literally.
  rules:
    - allow: [docker, ps]
    - allow: [docker, ps, -a]
    - ask: [gh, pr, {one_of: [view, list, status, checks, diff]}, "**"]
    - ask: [gh, issue, {one_of: [view, list]}, "**"]
    - ask: [gh, repo, view, "**"]
    - ask: [gh, run, {one_of: [list, view]}, "**"]
  # Wall-clock limit of one host command, then its whole process group is killed.
  timeout: 5m
  # How long a command waits for a human; nobody answering is a denial.
  approval_timeout: 5m
  # stdout and stderr together; beyond it the command is killed.
  max_output: 16MiB
  # Most hostexec requests per cloister per minute.
  rate_limit: 30

agents:
  # Agents run by \`cloister start --agent NAME\` and \`cloister run --agent NAME -- ARGS\`. Built in:
  # claude, codex, gemini (their config dirs are carried, filtered, into the cloister's HOME, and
  # their permission prompts are off: the cloister is the boundary). Change a built-in or add your
  # own; every key is optional except a custom agent's command. See \`cloister agent list\`.
  #   claude:
  #     skip_permissions: false            # keep Claude Code's own permission prompts
  #   aider:
  #     command: aider                     # a name on PATH, or an absolute path
  #     args: [--no-auto-commits]          # given before yours, every time
  #     env: [AIDER_MODEL]                 # host variables passed through (names, never secrets)
  #     config_dirs: [~/.aider]            # copied from your HOME, credentials and caches left out
  #     credential: {env: OPENAI_API_KEY}  # the variable the stored credential is put in
  #     skip_permissions_args: [--yes-always]
  #     instructions_file: ~/.aider/CONVENTIONS.md
  #     npm: aider-cli                     # what \`cloister agent install aider\` installs
  {}

ui:
  # The approval UI listens on 127.0.0.1 at this port (0 = any free port). \`cloister ui\` prints
  # a login link; the page and its JSON API need that login (or the token from \`cloister ui --token\`).
  port: 9999
`;
