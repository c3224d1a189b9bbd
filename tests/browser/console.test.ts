// The console (`GET /console`) in real Chromium against a real Shoal: it connects, subscribes, shows a published
// message in its frame log, publishes through POST /publish itself, and reconnects and re-subscribes by itself
// when Shoal restarts on the same port.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import type { Page } from "playwright-core";
import { launchBrowser } from "../support/browser.ts";
import { publish } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";

const TOKEN = "console-token";
const config = (port = 0) => ({
  ws: { port },
  services: { demo: { requireAuthentication: false, history: { size: 100, ttl: 60 } } },
  publish: { token: TOKEN },
  console: { enabled: true },
});

/** The frame log's lines, as text. */
const logText = (page: Page) => page.locator("#log").innerText();

async function waitForLog(page: Page, pattern: RegExp, what: string): Promise<void> {
  await page.waitForFunction(
    (source) => new RegExp(source).test(document.getElementById("log")!.innerText),
    pattern.source,
    { timeout: 10_000 },
  ).catch(async () => assert.fail(`${what}; the log:\n${await logText(page)}`));
}

test("console: connects, subscribes, shows a published message and publishes through /publish", async () => {
  await using shoal = await ShoalProcess.start(config());
  await using browser = await launchBrowser();
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
  await page.goto(`${shoal.httpUrl}/console`);
  await page.click("#connect");
  await page.waitForSelector('#state[data-state="connected"]');
  await page.fill("#subscription", "demo.news");
  await page.click("#subscribe");
  await waitForLog(page, /"event":"subscribe","status":"ok"/, "no subscribe OK");

  assert.equal((await publish(shoal, { subscription: "demo.news", data: "from a service" }, { token: TOKEN })).status, 200);
  await waitForLog(page, /"data":"from a service"/, "the published message did not show");

  await page.fill("#token", TOKEN);
  await page.fill("#publishBody", JSON.stringify({ subscription: "demo.news", data: "from the console" }));
  await page.click("#publish");
  await waitForLog(page, /200 \{"status":"ok","published":1/, "the console's publish was not answered 200");
  await waitForLog(page, /"data":"from the console"/, "the console's own publish did not arrive");

  await page.click("#ping");
  await page.waitForFunction(() => /ms$/.test(document.getElementById("latency")!.textContent ?? ""));
  assert.deepEqual(problems, [], "no script error, no CSP violation");
});

test("console: after Shoal restarts on the same port the page reconnects and re-subscribes by itself", async () => {
  const port = await freePort();
  const first = await ShoalProcess.start(config(port));
  await using browser = await launchBrowser();
  const page = await browser.newPage();
  await page.goto(`${first.httpUrl}/console`);
  await page.click("#connect");
  await page.waitForSelector('#state[data-state="connected"]');
  await page.click("#subscribe");
  await waitForLog(page, /"event":"subscribe","status":"ok"/, "no subscribe OK");
  await first.stop();
  await page.waitForSelector('#state[data-state="connecting"], #state[data-state="disconnected"]', { timeout: 10_000 });

  await using second = await ShoalProcess.start(config(port));
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 30_000 });
  assert.equal(await page.textContent("#reconnects"), "1");
  // Re-subscribed without a click: a message published now arrives.
  await page.waitForFunction(() => (document.getElementById("log")!.innerText.match(/"event":"subscribe","status":"ok"/g) ?? []).length >= 2, undefined, { timeout: 10_000 });
  await publish(second, { subscription: "demo.news", data: "after the restart" }, { token: TOKEN });
  await waitForLog(page, /"data":"after the restart"/, "no message after the restart");
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
