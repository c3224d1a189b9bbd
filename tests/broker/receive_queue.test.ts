import assert from "node:assert/strict";
import { test } from "node:test";
import type { BrokerMessage } from "../../src/broker/broker.ts";
import { ReceiveQueue } from "../../src/broker/receive_queue.ts";

test("ReceiveQueue: a delivery that throws is dropped and the messages behind it still go out, in order", async () => {
  const seen: string[] = [];
  const queue = new ReceiveQueue((message: BrokerMessage) => {
    if (message.payload === "bad") throw new RangeError("Maximum call stack size exceeded");
    seen.push(`${message.payload}:${message.queueSize}`);
  });
  queue.push("a", "1");
  queue.push("a", "bad");
  queue.push("a", "3");
  await queue.drained();
  assert.deepEqual(seen, ["1:3", "3:1"]);
  queue.push("a", "4");
  await queue.drained();
  assert.deepEqual(seen, ["1:3", "3:1", "4:1"], "the queue keeps working after a failure");
});

test("ReceiveQueue: drained() resolves at once when nothing waits, and after the hand-on when something does", async () => {
  const seen: string[] = [];
  const queue = new ReceiveQueue((message: BrokerMessage) => seen.push(message.payload));
  await queue.drained();
  queue.push("a", "1");
  const drained = queue.drained();
  assert.deepEqual(seen, [], "never handed on inside push");
  await drained;
  assert.deepEqual(seen, ["1"]);
});
