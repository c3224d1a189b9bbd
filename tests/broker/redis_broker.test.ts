import assert from "node:assert/strict";
import { test } from "node:test";
import type { BrokerMessage, BrokerStatus } from "../../src/broker/broker.ts";
import { RedisBroker } from "../../src/broker/redis_broker.ts";
import { DEFAULTS, type RedisBrokerConfig } from "../../src/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { fakeLinks } from "../support/fake_link.ts";

// The RedisBroker's state machine over fake links (tests/support/fake_link.ts); tests/e2e/redis.test.ts and
// brokers.test.ts cover the same broker against a real redis-server.

const ALT = { url: "redis://alt", channelPrefix: "q:" };

function setup(overrides: Partial<RedisBrokerConfig> = {}) {
  const config: RedisBrokerConfig = {
    ...DEFAULTS.redis,
    kind: "redis",
    url: "redis://main",
    channelPrefix: "p:",
    ...overrides,
  };
  const clock = new FakeClock();
  const { links, createLinks } = fakeLinks(clock);
  const broker = new RedisBroker(config, { clock, createLinks });
  const received: BrokerMessage[] = [];
  const statuses: BrokerStatus[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((resolve) => resolve());
  const handlers = {
    onMessage: (message: BrokerMessage) => (received.push(message), wake()),
    onStatus: (status: BrokerStatus) => (statuses.push(status), wake()),
  };
  /** Resolves once `condition` holds, checked after each message and status. */
  const when = (condition: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (condition() ? resolve() : waiters.push(check));
      check();
    });
  return {
    clock,
    links,
    broker,
    statuses,
    start: () => broker.start(handlers),
    /** The channel and payload of the first `n` messages, once `n` have arrived. */
    messages: async (n: number) => {
      await when(() => received.length >= n);
      return received.map((m) => [m.channel, m.payload]);
    },
    /** The next status reported after this call. */
    nextStatus: async () => {
      const seen = statuses.length;
      await when(() => statuses.length > seen);
      return statuses[seen];
    },
  };
}

test("RedisBroker: start connects the server and its alt and reports ready once; channels carry each link's prefix", async () => {
  const { links, broker, statuses, start, messages } = setup({ alt: ALT });
  assert.equal(broker.ready, false);
  await start();
  assert.deepEqual(statuses, [{ ready: true }]);
  assert.equal(broker.ready, true);
  await broker.subscribe("a");
  assert.deepEqual(links.map((link) => link.subscribed), [["p:a"], ["q:a"]]);
  links[1].deliver("q:a", "from alt");
  await broker.publish("a", "from main");
  assert.deepEqual(
    links[0].commands,
    ["subscribe p:a", "publish p:a from main"],
    "publish goes to the first Redis only",
  );
  assert.deepEqual(await messages(2), [["a", "from alt"], ["a", "from main"]]);
});

test("RedisBroker: a channel subscribed before start is subscribed once connected", async () => {
  const { links, broker, start, messages } = setup();
  await broker.subscribe("early");
  assert.deepEqual(links[0].commands, [], "nothing is sent before a connection");
  await start();
  assert.deepEqual(links[0].subscribed, ["p:early"]);
  links[0].deliver("p:early", "x");
  assert.deepEqual(await messages(1), [["early", "x"]]);
});

test("RedisBroker: a Redis unreachable at start fails it after connectTimeout, naming that Redis; every link is closed, no timer left", async () => {
  const { clock, links, broker, statuses, start } = setup({ alt: ALT, connectTimeout: 10 });
  links[1].reachable = false;
  const failed = assert.rejects(start(), {
    message: "cannot connect to Redis at redis://alt: no connection within 10 s",
  });
  await clock.advance(10_000);
  await failed;
  // Before the first connection: doubling from 100 ms without spread, the last wait cut to end at the deadline.
  assert.deepEqual(links[1].waits, [100, 200, 400, 800, 1600, 3200, 3700]);
  assert.deepEqual(links.map((link) => link.open), [false, false]);
  assert.equal(clock.pending, 0);
  assert.equal(broker.ready, false);
  assert.deepEqual(statuses, []);
});

test("RedisBroker: a lost connection makes it not ready; on reconnect, changes made meanwhile are applied and every channel delivers", async () => {
  const { clock, links, broker, statuses, start, messages, nextStatus } = setup();
  const [link] = links;
  await start();
  await broker.subscribe("a");
  await broker.subscribe("b");
  link.reachable = false;
  link.drop("socket closed unexpectedly");
  assert.deepEqual(statuses.at(-1), { ready: false, reason: "Error: socket closed unexpectedly" });
  assert.equal(broker.ready, false);

  // Accepted while down; nothing can be sent yet.
  const before = link.commands.length;
  await broker.subscribe("c");
  await broker.unsubscribe("a");
  assert.deepEqual(link.commands.slice(before), []);
  assert.deepEqual([...broker.channels].sort(), ["b", "c"]);

  await clock.advance(1000);
  assert.equal(broker.ready, false, "still reconnecting");
  const back = nextStatus();
  link.reachable = true;
  await clock.advance(5000);
  assert.deepEqual(await back, { ready: true });
  assert.equal(broker.ready, true);
  // node-redis re-subscribed b itself; the broker sent only what changed while it was down.
  assert.deepEqual(link.commands.slice(before).sort(), ["subscribe p:c", "unsubscribe p:a"]);
  assert.deepEqual(link.subscribed, ["p:b", "p:c"]);
  link.deliver("p:a", "gone");
  link.deliver("p:c", "to c");
  link.deliver("p:b", "to b");
  assert.deepEqual(
    await messages(2),
    [["c", "to c"], ["b", "to b"]],
    "each to its channel; a's came first and was dropped",
  );
});

test("RedisBroker: readiness comes back only after the re-subscribes have completed", async () => {
  const { clock, links, broker, start, nextStatus } = setup();
  const [link] = links;
  await start();
  link.reachable = false;
  link.drop();
  await broker.subscribe("c");
  const held = link.hold("p:c");
  link.reachable = true;
  await clock.advance(5000);
  await held.called;
  assert.equal(link.ready, true);
  assert.equal(broker.ready, false, "the SUBSCRIBE of c has no reply yet");
  const back = nextStatus();
  held.release();
  assert.deepEqual(await back, { ready: true });
  assert.deepEqual(link.subscribed, ["p:c"]);
});

test("RedisBroker: with an alt Redis it is ready only while both links are", async () => {
  const { clock, links, broker, statuses, start, nextStatus } = setup({ alt: ALT });
  await start();
  for (const link of links) link.reachable = false;
  links[1].drop("alt down");
  links[0].drop("main down");
  assert.deepEqual(statuses.slice(1), [{ ready: false, reason: "Error: alt down" }], "one report for the pair");
  links[1].reachable = true;
  await clock.advance(5000);
  assert.equal(links[1].ready, true);
  assert.equal(broker.ready, false, "main is still down");
  assert.equal(statuses.length, 2);
  const back = nextStatus();
  links[0].reachable = true;
  await clock.advance(5000);
  assert.deepEqual(await back, { ready: true });
  assert.deepEqual(statuses, [{ ready: true }, { ready: false, reason: "Error: alt down" }, { ready: true }]);
});

test("RedisBroker: unsubscribing while the SUBSCRIBE is in flight undoes it when the reply comes", async () => {
  const { links, broker, start, messages } = setup();
  const [link] = links;
  await start();
  const held = link.hold("p:a");
  const subscribed = broker.subscribe("a");
  await held.called;
  await broker.unsubscribe("a");
  assert.deepEqual(link.commands, ["subscribe p:a"], "nothing to UNSUBSCRIBE before the reply");
  held.release();
  await subscribed;
  assert.deepEqual(link.commands, ["subscribe p:a", "unsubscribe p:a"]);
  assert.deepEqual(link.subscribed, []);
  assert.deepEqual([...broker.channels], []);
  await broker.subscribe("b");
  link.deliver("p:a", "late");
  link.deliver("p:b", "to b");
  assert.deepEqual(await messages(1), [["b", "to b"]]);
});

test("RedisBroker: onConnectionLoss shutdown reports a lost connection as fatal and the link gives up", async () => {
  const { clock, links, broker, statuses, start } = setup({ onConnectionLoss: "shutdown" });
  const [link] = links;
  await start();
  link.drop("socket closed unexpectedly");
  assert.deepEqual(statuses, [
    { ready: true },
    { ready: false, reason: "redis connection lost: gave up: Error: socket closed unexpectedly", fatal: true },
  ]);
  assert.equal(broker.ready, false);
  assert.equal(link.open, false, "no reconnect");
  assert.equal(clock.pending, 0);
  await broker.close();
});

test("RedisBroker: reconnect waits double from 100 ms up to maxReconnectDelay, each plus up to 100 ms of spread; a new loss starts over", async () => {
  const { clock, links, broker, start, nextStatus } = setup({ maxReconnectDelay: 1 });
  const [link] = links;
  await start();
  // The strategy is asked on the loss too (node-redis then tries at once): that first draw is not waited.
  clock.randoms = [0.9, 0, 0.5, 0.99, 0.25, 0.1, 0.7];
  link.reachable = false;
  link.drop();
  // The sixth wait begins when the fifth ends.
  await clock.advance(200 + 450 + 899 + 1025 + 1010);
  assert.deepEqual(link.waits, [200, 450, 899, 1025, 1010, 1070]);
  assert.deepEqual(clock.randoms, []);
  const back = nextStatus();
  link.reachable = true;
  await clock.advance(1100);
  assert.deepEqual(await back, { ready: true });

  link.waits.length = 0;
  clock.randoms = [0, 0];
  link.reachable = false;
  link.drop();
  assert.deepEqual(link.waits, [200]);
  await broker.close();
});

test("RedisBroker: close() while reconnecting leaves no timer and no link open, and nothing happens after", async () => {
  const { clock, links, broker, statuses, start } = setup({ alt: ALT });
  await start();
  await broker.subscribe("a");
  links[0].reachable = false;
  links[0].drop();
  await clock.advance(250);
  assert.equal(clock.pending, 1, "a reconnect wait");
  await broker.close();
  assert.equal(clock.pending, 0);
  assert.deepEqual(links.map((link) => link.open), [false, false]);
  assert.equal(broker.ready, false);
  assert.equal(broker.channels.size, 0);
  const reported = statuses.length;
  links[0].reachable = true;
  await clock.advance(10_000);
  assert.equal(links[0].ready, false);
  assert.equal(statuses.length, reported);
  await assert.rejects(broker.subscribe("b"), /closed/);
  await assert.rejects(broker.publish("a", "x"), /closed/);
});
