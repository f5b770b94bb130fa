import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CloisterError } from "../../errors.js";

export interface Asset {
  contentType: string;
  body: Buffer;
}

/** URL path → the built file in the assets directory (dist/ui: scripts/bundle.mjs writes it). */
const FILES: Record<string, [file: string, contentType: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/assets/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/assets/style.css": ["style.css", "text/css; charset=utf-8"],
};

/** Reads every asset once at start, so a missing build fails the start rather than a page load. */
export async function loadAssets(dir: string): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  for (const [path, [file, contentType]] of Object.entries(FILES)) {
    const body = await readFile(join(dir, file)).catch(() => {
      throw new CloisterError(`the approval UI's ${file} is missing from ${dir}`, "build it with `npm run build`");
    });
    assets.set(path, { contentType, body });
  }
  return assets;
}

/** What a browser without a session gets instead of the UI: the only way in is a fresh login link. */
export const SIGN_IN_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Cloister approvals</title><link rel="stylesheet" href="/assets/style.css"></head>
<body><main class="signin"><h1>Cloister approvals</h1><p>This browser is not signed in. On the host, run <code>cloister ui</code> and open the link it prints: each link works once, within two minutes.</p></main></body>
</html>
`;
