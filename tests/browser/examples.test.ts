// The example page (examples/browser/) in real Chromium: it logs in through the example service, receives its own
// filtered notice and a chat message from another user, and when Shoal restarts it reconnects, re-subscribes and
// recovers what was published meanwhile (Redis keeps the history).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Page } from "playwright-core";
import { launchBrowser } from "../support/browser.ts";
import { Example } from "../support/example_app.ts";
import { RedisServer } from "../support/redis_server.ts";

async function login(page: Page, url: string, username: string): Promise<void> {
  await page.goto(url);
  await page.fill("#username", username);
  await page.click("#login-button");
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
}

const texts = (page: Page, selector: string) => page.locator(selector).allInnerTexts();

test("example page: logs in, gets its own notice (filtered to it), sees another user's message; recovers after a restart", async () => {
  await using redis = await RedisServer.start();
  await using example = await Example.start({ redisUrl: redis.url });
  await using browser = await launchBrowser();
  const alice = await browser.newPage();
  const bob = await browser.newPage();
  const problems: string[] = [];
  for (const page of [alice, bob]) page.on("pageerror", (error) => problems.push(error.message));

  await login(alice, example.serviceUrl, "alice");
  await login(bob, example.serviceUrl, "bob");
  // The welcome notice is published to user.<id> with the session's filter field: each page sees only its own.
  await alice.waitForFunction(() => document.querySelectorAll("#notices li").length > 0, undefined, { timeout: 10_000 });
  const aliceNotices = (await texts(alice, "#notices li")).join("\n");
  assert.doesNotMatch(aliceNotices, /bob/i, "bob's notice is not alice's");

  await bob.fill("#chat-text", "hello from bob");
  await bob.click("#chat-send");
  await alice.waitForFunction(() => document.getElementById("messages")!.innerText.includes("hello from bob"), undefined, {
    timeout: 10_000,
  });

  // Shoal goes away; two messages are announced meanwhile (into Redis, with the history script); Shoal comes back.
  await example.shoal.kill();
  await alice.waitForSelector('#state[data-state="connecting"], #state[data-state="disconnected"]', { timeout: 10_000 });
  for (const text of ["missed one", "missed two"]) {
    const answer = await example.post("/api/announce", { room: "lobby", text });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  }
  await example.restartShoal();
  await alice.waitForSelector('#recovery[data-result="recovered"]', { timeout: 30_000 });
  const messages = (await texts(alice, "#messages li")).join("\n");
  assert.match(messages, /missed one[\s\S]*missed two/, "both missed messages, in order");
  assert.equal(messages.match(/missed one/g)?.length, 1, "once");
  assert.deepEqual(problems, []);
});
