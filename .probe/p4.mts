import { parseRule } from "../src/policy/rules.js";
import { canonicalHost, parseAuthority } from "../src/policy/hosts.js";
for (const r of ["localhost:80", "127.0.0.1:80", "[::1]:80"]) { try { console.log(parseRule(r)); } catch (e) { console.log(r, (e as Error).message); } }
for (const h of ["127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "127.0.0.1.", "LOCALHOST.", "xn--", "ａｐｉ.test", "api.test.", "api..test", "0x7f000001", "127.000.0.1", "1.2.3", "[0:0:0:0:0:0:0:1]", "[::127.0.0.1]"]) { try { console.log(h, JSON.stringify(canonicalHost(h))); } catch (e) { console.log(h, "ERR", (e as Error).message); } }
