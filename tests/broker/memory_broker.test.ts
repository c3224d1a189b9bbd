import assert from "node:assert/strict";
import { test } from "node:test";
import type { BrokerMessage } from "../../src/broker/broker.ts";
import { MemoryBroker } from "../../src/broker/memory_broker.ts";

async function started() {
  const broker = new MemoryBroker();
  const received: BrokerMessage[] = [];
  const statuses: boolean[] = [];
  await broker.start({ onMessage: (m) => received.push(m), onStatus: (s) => statuses.push(s.ready) });
  return { broker, received, statuses };
}

test("MemoryBroker: ready at once; a published message reaches a subscribed channel on a later turn, with queue_size", async () => {
  const { broker, received, statuses } = await started();
  assert.deepEqual(statuses, [true]);
  assert.equal(broker.ready, true);
  await broker.subscribe("a");
  const first = broker.publish("a", "1");
  const second = broker.publish("a", "2");
  assert.equal(received.length, 0, "never delivered inside publish");
  await Promise.all([first, second]); // each resolves once handed on
  assert.deepEqual(received.map((m) => [m.channel, m.payload, m.queueSize]), [["a", "1", 2], ["a", "2", 1]]);
  assert.ok(received.every((m) => Math.abs(m.receivedAt - Date.now()) < 5000));
});

test("MemoryBroker: a channel nobody subscribes drops the message; unsubscribing while queued drops it too", async () => {
  const { broker, received } = await started();
  await broker.publish("nobody", "x");
  await broker.subscribe("a");
  const queued = broker.publish("a", "queued");
  void broker.unsubscribe("a");
  await broker.unsubscribe("a"); // not subscribed: nothing happens
  await queued;
  assert.deepEqual(received, []);
  assert.deepEqual([...broker.channels], []);
});

test("MemoryBroker: after close it is not ready, holds no channel and refuses subscribe and publish", async () => {
  const { broker, received } = await started();
  await broker.subscribe("a");
  const before = broker.publish("a", "before close");
  await broker.close();
  await before; // the drain it waited for ran, and handed on nothing
  assert.deepEqual(received, []);
  assert.equal(broker.ready, false);
  assert.equal(broker.channels.size, 0);
  await assert.rejects(broker.subscribe("a"), /closed/);
  await assert.rejects(broker.publish("a", "x"), /closed/);
});

test("MemoryBroker histories: a read creates no ring; unused epochs are bounded, the oldest going first", async () => {
  const { MAX_UNUSED_HISTORIES, MemoryHistories } = await import("../../src/broker/memory_history.ts");
  const { systemClock } = await import("../../src/core/clock.ts");
  const histories = new MemoryHistories(systemClock);
  const options = { size: 1_000_000, ttl: 600 };
  const first = histories.read("h.0", options).epoch;
  assert.equal(histories.read("h.0", options).epoch, first, "the same epoch while it lives");
  for (let i = 1; i <= MAX_UNUSED_HISTORIES; i++) histories.read(`h.${i}`, options);
  assert.equal(histories.count, MAX_UNUSED_HISTORIES);
  assert.notEqual(histories.read("h.0", options).epoch, first, "the oldest unused one was forgotten");
  // One that was appended to is kept whatever the reads.
  histories.append("kept", "{}", options);
  for (let i = 0; i < 10; i++) histories.read(`more.${i}`, options);
  assert.equal(histories.read("kept", options).top, 1);
  histories.close();
});
