import assert from "node:assert/strict";
import { test } from "node:test";
import { FETCH_BUDGET, FetchSlots } from "../../src/services/fetch_slots.ts";

test("FetchSlots: slots up to the limit at once, then waiters served in arrival order", async () => {
  const slots = new FetchSlots(2);
  const a = slots.tryAcquire()!;
  const b = (await slots.acquire())!;
  assert.equal(slots.tryAcquire(), undefined);
  const order: string[] = [];
  const c = slots.acquire().then((release) => (order.push("c"), release!));
  const d = slots.acquire().then((release) => (order.push("d"), release!));
  assert.equal(slots.waiting, 2);
  b();
  const releaseC = await c;
  assert.deepEqual(order, ["c"]);
  assert.equal(slots.tryAcquire(), undefined, "a newcomer does not jump the queue");
  a();
  (await d)();
  releaseC();
  assert.deepEqual(order, ["c", "d"]);
  assert.equal(slots.used, 0);
  assert.equal(slots.waiting, 0);
});

test("FetchSlots: a release called twice frees one slot only", () => {
  const slots = new FetchSlots(1);
  const release = slots.tryAcquire()!;
  release();
  const again = slots.tryAcquire()!;
  release();
  assert.equal(slots.used, 1, "the second release of the old slot did not free the new one");
  again();
  assert.equal(slots.used, 0);
});

test("FetchSlots: an aborted waiter leaves the queue and gets no slot", async () => {
  const slots = new FetchSlots(1);
  const held = slots.tryAcquire()!;
  const controller = new AbortController();
  const gone = slots.acquire(controller.signal);
  const next = slots.acquire();
  controller.abort();
  assert.equal(await gone, undefined);
  assert.equal(slots.waiting, 1);
  held();
  (await next)!();
  assert.equal(slots.used, 0);
  assert.equal(await slots.acquire(AbortSignal.abort()), undefined);
  assert.equal(slots.used, 0);
});

test("FetchSlots.run gives the slot back when the task throws", async () => {
  const slots = new FetchSlots(1);
  await assert.rejects(slots.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await slots.run(() => Promise.resolve(7)), 7);
  assert.equal(slots.used, 0);
});

test("FETCH_BUDGET stays under Bun's 256 fetches per process, the shared Upstash stream included", () => {
  const total = FETCH_BUDGET.callbacks + FETCH_BUDGET.upstashStreams + 1 + FETCH_BUDGET.upstashCommands;
  assert.ok(total < 256, `the shares add up to ${total}`);
});
