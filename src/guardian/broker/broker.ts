/**
 * The credential broker (DESIGN.md decision 7): secrets stay in the guardian; a cloister gets a
 * placeholder of the same shape, and the proxy swaps in the real value on its way out, for the exact
 * hosts the secret belongs to (policy/injection.ts). This module keeps what that needs at hand:
 * the rules in force (user rules from the vault, then the built-in ones), the real values (read from
 * the vault once and kept in memory until the vault changes), each cloister's placeholders (derived,
 * so a restarted guardian finds the same ones without storing them), the interception CA, and the
 * TLS settings for the upstream side.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import { createFileAtomic, ensurePrivateDir } from "../../config/atomic-write.js";
import type { CloisterPaths } from "../../config/paths.js";
import { CloisterError } from "../../errors.js";
import { rulesFor, type ActiveRule, type InjectionRule } from "../../policy/injection.js";
import { placeholderFor } from "../../policy/placeholders.js";
import type { Host } from "../../policy/hosts.js";
import { CertificateAuthority, systemRootsPem } from "./ca.js";
import type { Vault } from "../vault/vault.js";

export interface BrokerSettings {
  /** Hosts intercepted without a secret of theirs, so placeholders sent there are seen. */
  inspect: readonly string[];
  /** An extra CA file trusted for upstream TLS (tests; a company's TLS-inspecting gateway). */
  upstreamCa: string | null;
}

/** What the proxy needs to terminate one intercepted connection. */
export interface Interception {
  /** Every rule in force for the cloister: a placeholder of any of them is recognised. */
  active: ActiveRule[];
  /** The certificate the cloister's client is shown for this host. */
  serverContext: SecureContext;
  /** Verifies the origin: the system roots (plus `upstreamCa`). */
  upstreamContext: SecureContext;
}

interface Loaded {
  rules: InjectionRule[];
  /** Real values by secret name; a secret is absent while the vault is locked. */
  values: Map<string, string>;
}

const PLACEHOLDER_KEY_BYTES = 32;

export class Broker {
  private loaded: Promise<Loaded> | undefined;
  private upstream: { extra: string | null; context: Promise<SecureContext> } | undefined;
  /**
   * Per cloister id and secret: its placeholder, and the value it was derived from (derivation hashes;
   * this spares repeating it per request). Kept while the vault is locked, so a placeholder handed
   * out before is still recognised (and refused with "locked") rather than tunnelled untouched.
   */
  private readonly placeholders = new Map<string, { placeholder: string; from: string; at: number }>();

  private constructor(
    readonly ca: CertificateAuthority,
    /** The bundle cloisters trust: the system roots plus the CA (mounted read-only into each). */
    readonly trustBundle: string,
    /** What NODE_EXTRA_CA_CERTS names in cloisters: the CA and any system root node lacks (mounted too). */
    readonly nodeTrustFile: string,
    private readonly placeholderKey: Buffer,
    private readonly vault: Vault,
    private readonly settings: () => BrokerSettings,
  ) {}

  static async open(paths: CloisterPaths, vault: Vault, settings: () => BrokerSettings): Promise<Broker> {
    const dir = join(paths.stateDir, "broker");
    ensurePrivateDir(dir);
    const ca = await CertificateAuthority.open(dir);
    const trust = { bundle: join(dir, "trust-bundle.pem"), nodeExtra: join(dir, "node-extra-ca.pem") };
    // Written at every start: the host's roots may have been updated since.
    await ca.writeTrustFiles(trust);
    return new Broker(ca, trust.bundle, trust.nodeExtra, await placeholderKey(join(dir, "placeholder.key")), vault, settings);
  }

  /** The vault changed (a secret set or removed, unlocked or locked): read it again when next needed. */
  invalidate(): void {
    this.loaded = undefined;
  }

  /** The cloister is gone for good: its placeholders are no longer kept (they would be derived alike). */
  forget(cloisterId: string): void {
    for (const key of this.placeholders.keys()) if (key.startsWith(`${cloisterId}\0`)) this.placeholders.delete(key);
  }

  /**
   * Lets go of the placeholders derived before `before` (ms since the epoch) for cloisters not in
   * `live`: those of launches that never became a cloister (an agent's credential is asked for
   * before the launch is granted, so a launch cut off in between was kept for good).
   */
  forgetAllBut(live: ReadonlySet<string>, before: number): void {
    for (const [key, { at }] of this.placeholders) if (at < before && !live.has(key.slice(0, key.indexOf("\0")))) this.placeholders.delete(key);
  }

  /** The rules in force for a cloister, each with its placeholder there and the real value. */
  async active(cloisterId: string): Promise<ActiveRule[]> {
    const loaded = await this.load();
    return loaded.rules.flatMap((rule) => {
      const real = loaded.values.get(rule.secret);
      const placeholder = this.placeholderOf(cloisterId, rule, real);
      return placeholder === undefined ? [] : [{ rule, placeholder, real }];
    });
  }

  /** The placeholder a cloister gets instead of a secret; undefined when no rule brokers it. */
  async placeholder(cloisterId: string, secret: string): Promise<string | undefined> {
    return (await this.active(cloisterId)).find((active) => active.rule.secret === secret)?.placeholder;
  }

  /**
   * Whether a connection of this cloister to host:port is intercepted: when a secret belongs there,
   * or the config marks the host for inspection. Everything else is tunnelled untouched.
   */
  async interception(cloisterId: string, host: Host, port: number): Promise<Interception | undefined> {
    if (host.kind !== "name") return undefined;
    const active = await this.active(cloisterId);
    const inspected = port === 443 && this.settings().inspect.includes(host.name);
    if (!inspected && rulesFor(active, host.name, port).length === 0) {
      // A secret of this host whose placeholder cannot even be derived (the vault was locked since
      // the guardian started): refuse, rather than tunnel the cloister's placeholder to its origin.
      const locked = (await this.load()).rules.find((rule) => !active.some((a) => a.rule === rule) && rule.hosts.some((h) => h.host === host.name && h.ports.includes(port)));
      if (locked) throw new CloisterError(`the vault is locked, so the secret ${locked.secret} cannot be injected: run \`cloister secret unlock\` on the host`);
      return undefined;
    }
    const [serverContext, upstreamContext] = await Promise.all([this.ca.contextFor(host.name), this.upstreamContext()]);
    return { active, serverContext, upstreamContext };
  }

  private placeholderOf(cloisterId: string, rule: InjectionRule, real: string | undefined): string | undefined {
    const key = `${cloisterId}\0${rule.secret}`;
    const known = this.placeholders.get(key);
    // The shape comes from the real value; while a passphrase vault is locked there is none to copy.
    if (real === undefined || known?.from === real) return known?.placeholder;
    const placeholder = placeholderFor(this.placeholderKey, cloisterId, rule.secret, real, rule.prefix);
    this.placeholders.set(key, { placeholder, from: real, at: Date.now() });
    return placeholder;
  }

  private load(): Promise<Loaded> {
    this.loaded ??= this.read().catch(() => {
      // A damaged vault brokers nothing (placeholders then reach no origin as credentials), and
      // is read again next time: `cloister secret status` reports what is wrong with it.
      this.loaded = undefined;
      return { rules: [], values: new Map() };
    });
    return this.loaded;
  }

  private async read(): Promise<Loaded> {
    // The vault lists each stored secret with its rule in force (the user's, else a built-in one).
    const rules = (await this.vault.list()).flatMap((secret) => (secret.inject ? [secret.inject] : []));
    const values = new Map<string, string>();
    for (const rule of rules) {
      try {
        values.set(rule.secret, await this.vault.get(rule.secret));
      } catch (error) {
        // Locked: placeholders derived before still match; requests that present one are refused.
        if (!(error instanceof CloisterError)) throw error;
      }
    }
    return { rules, values };
  }

  private upstreamContext(): Promise<SecureContext> {
    const extra = this.settings().upstreamCa;
    if (this.upstream?.extra !== extra) {
      this.upstream = { extra, context: upstreamContextWith(extra) };
      this.upstream.context.catch(() => (this.upstream = undefined));
    }
    return this.upstream.context;
  }
}

async function upstreamContextWith(extraCaFile: string | null): Promise<SecureContext> {
  const ca = [systemRootsPem()];
  if (extraCaFile) {
    try {
      ca.push(await readFile(extraCaFile, "utf8"));
    } catch (error) {
      throw new CloisterError(`cannot read proxy.upstream_ca ${extraCaFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, "fix the path in `cloister config edit`");
    }
  }
  return createSecureContext({ ca });
}

/** The key placeholders are derived with: made once, kept 0600 beside the CA. */
async function placeholderKey(file: string): Promise<Buffer> {
  await createFileAtomic(file, randomBytes(PLACEHOLDER_KEY_BYTES), 0o600);
  const key = await readFile(file);
  if (key.length !== PLACEHOLDER_KEY_BYTES) throw new CloisterError(`the placeholder key ${file} is damaged (${key.length} bytes, expected ${PLACEHOLDER_KEY_BYTES})`, "remove it; cloisters running now must then be restarted");
  return key;
}
