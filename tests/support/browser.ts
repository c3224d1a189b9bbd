import process from "node:process";
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";

/** The system Chromium: $CHROMIUM (tests/run.mjs sets it), else the usual Debian paths. */
export function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) throw new Error("no Chromium: install it (sudo apt-get install -y chromium) or set CHROMIUM");
  return found;
}

/** Headless Chromium, driven by playwright-core (no browser download). Close it in the test's cleanup. */
export async function launchBrowser(): Promise<Browser & AsyncDisposable> {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: root ? ["--no-sandbox"] : [],
  });
  return Object.assign(browser, { [Symbol.asyncDispose]: () => browser.close() });
}
