import assert from "node:assert/strict";
import { test } from "node:test";
import { Activity } from "../../src/core/activity.ts";
import { Harness } from "../support/harness.ts";
import { gate } from "../support/fake_clock.ts";

test("Activity: counts work from start to end, idle() waits for the last, an end counts once", async () => {
  const activity = new Activity();
  await activity.idle(); // nothing in flight: at once
  const work = gate();
  const tracked = activity.track(work.promise);
  assert.equal(tracked, work.promise, "track hands the work back unchanged");
  const end = activity.begin();
  assert.equal(activity.busy, 2);
  let idle = false;
  const waiting = activity.idle().then(() => (idle = true));
  end();
  end(); // a second call changes nothing
  assert.equal(activity.busy, 1);
  work.open();
  await waiting;
  assert.equal(idle, true);
  assert.equal(activity.busy, 0);
});

test("Activity: a failed piece of work ends too, and its rejection stays the caller's", async () => {
  const activity = new Activity();
  const failing = activity.track(Promise.reject(new Error("boom")));
  await assert.rejects(failing, /boom/);
  await activity.idle();
  assert.equal(activity.busy, 0);
});

const ON_MSG = "http://svc.test/on_message";
const config = { services: { s: { requireAuthentication: false, onMessage: ON_MSG } } };

test("Harness.settled: waits for a reply that takes real time, however many turns it needs", async () => {
  const h = await new Harness(config).start();
  h.services.on(ON_MSG, { delay: 30, reply: { status: "ok", data: "late" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "s.a" });
  assert.deepEqual(await c.call({ event: "message", subscription: "s.a" }), [
    { event: "message", status: "ok", data: "late", subscription: "s.a" },
  ]);
});

test("Harness.settled: returns while the core waits on a call the test holds, and fails loudly otherwise", async () => {
  const h = await new Harness(config).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok", data: 1 } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "s.a" });
  assert.deepEqual(await c.call({ event: "message", subscription: "s.a" }), [], "held: nothing yet");
  assert.equal(h.router.activity.busy, 1, "the session waits on the held call");
  held.open();
  await h.settled();
  assert.deepEqual(c.take(), [{ event: "message", status: "ok", data: 1, subscription: "s.a" }]);
  h.services.on(ON_MSG, { delay: 500, reply: { status: "ok" } });
  c.session.receive(JSON.stringify({ event: "message", subscription: "s.a" }));
  await assert.rejects(h.settled(50), /did not settle: 1 pieces of work in flight, 0 held by the test/);
  await h.settled();
});
