/**
 * A real browser for the UI tests: playwright-core driving the system's Chromium (Debian's
 * `chromium` package), headless. Nothing is downloaded: the browser must be installed.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  // Chromium's own sandbox refuses to run as root, which is how the tests run on CI.
  const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}
