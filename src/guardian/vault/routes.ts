/**
 * The vault on the guardian's control API. No route answers with a value: values go in (set) and
 * stay in the guardian. Changes are audited by name only.
 */
import type { AuditEvent } from "../../audit/log.js";
import { CloisterError } from "../../errors.js";
import type { Handler } from "../control-server.js";
import type { Vault } from "./vault.js";
import type { InjectionSpec } from "../../policy/injection.js";

export function vaultRoutes(vault: Vault, audit: (event: AuditEvent) => void = () => undefined): Record<string, Handler> {
  return {
    "GET /v1/secrets": async () => ({ secrets: await vault.list() }),
    "GET /v1/secrets/status": () => vault.status(),
    "PUT /v1/secrets/:name": async (body, [name = ""]) => {
      // No value: keep the stored one (`secret set NAME --keep-value`); an empty one is refused as such.
      const value = text(body, "value");
      const result = await vault.set(name, value, text(body, "description"), injectSpec(body.inject));
      audit({ type: "secret.set", name, created: result.created, ...(value === undefined ? { valueKept: true } : {}) });
      return result;
    },
    "DELETE /v1/secrets/:name": async (_, [name = ""]) => {
      const removed = await vault.remove(name);
      if (removed) audit({ type: "secret.remove", name });
      return { removed };
    },
    "POST /v1/secrets/unlock": async (body) => {
      try {
        await vault.unlock(text(body, "passphrase") ?? "");
      } catch (error) {
        audit({ type: "vault.unlock", ok: false });
        throw error;
      }
      audit({ type: "vault.unlock", ok: true });
      return { locked: false };
    },
    "POST /v1/secrets/lock": async () => {
      await vault.lock();
      audit({ type: "vault.lock" });
      return { locked: true };
    },
    "POST /v1/secrets/passphrase": async (body) => {
      await vault.setPassphrase(text(body, "passphrase") ?? "");
      audit({ type: "vault.passphrase", on: true });
      return vault.status();
    },
    "POST /v1/secrets/passphrase/remove": async () => {
      const result = await vault.removePassphrase();
      audit({ type: "vault.passphrase", on: false });
      return result;
    },
  };
}

/** The body's injection rule: an object of texts, null (remove the user's rule) or absent (keep it). */
function injectSpec(value: unknown): InjectionSpec | null | undefined {
  if (value === undefined || value === null) return value;
  const spec = value as Record<string, unknown>;
  const hosts = spec.hosts;
  if (typeof spec !== "object" || !Array.isArray(hosts) || !hosts.every((h) => typeof h === "string")) throw new CloisterError('"inject.hosts" must be a list of host names');
  return { hosts, header: text(spec, "header"), basic: text(spec, "basic") };
}

/** A string field of the request body, or undefined when absent; anything else is refused. */
function text(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || typeof value === "string") return value;
  throw new CloisterError(`"${field}" must be a string`);
}
