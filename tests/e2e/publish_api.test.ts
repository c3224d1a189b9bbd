// POST /publish end to end: authentication, validation, limits, and delivery to real WebSocket clients.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deliveredMessage, publish, subscribed } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";

const TOKEN = "e2e-secret-token";
const OPEN = { open: { requireAuthentication: false } };

test("publish: 401 without a token or with a wrong one, and nothing is delivered", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using client = await subscribed(shoal);
  const message = { subscription: "open.a", data: 1 };

  const missing = await publish(shoal, message, { token: null });
  assert.equal(missing.status, 401);
  assert.deepEqual(missing.body, { status: "error", error: "Missing bearer token." });
  const wrong = await publish(shoal, message, { token: `${TOKEN}x` });
  assert.equal(wrong.status, 401);
  assert.deepEqual(wrong.body, { status: "error", error: "Invalid bearer token." });
  const basic = await publish(shoal, message, { authorization: `Basic ${btoa(`user:${TOKEN}`)}` });
  assert.ok([400, 401].includes(basic.status), `a Basic header is refused, got ${basic.status}`);
  await client.expectNothing(300);
});

test("publish: 400 for invalid JSON and for messages without subscription or data", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using client = await subscribed(shoal);
  const notJson = { status: "error", error: "Body must be JSON: a message object or an array of them." };
  const reason = "invalid service event: needs a string subscription and a data key";

  for (const body of ["{", "", "not json"]) {
    const answer = await publish(shoal, body, { token: TOKEN });
    assert.deepEqual({ status: answer.status, body: answer.body }, { status: 400, body: notJson }, `body ${JSON.stringify(body)}`);
  }
  for (const message of [{ subscription: "open.a" }, { data: 1 }, { subscription: 5, data: 1 }, null, "open.a", 7]) {
    const answer = await publish(shoal, JSON.stringify(message), { token: TOKEN });
    assert.deepEqual(
      { status: answer.status, body: answer.body },
      { status: 400, body: { status: "error", error: "Invalid message.", problems: [reason] } },
      `message ${JSON.stringify(message)}`,
    );
  }
  // One bad message in an array refuses the whole array: nothing is published.
  const mixed = await publish(shoal, [{ subscription: "open.a", data: 1 }, { subscription: "open.a" }], { token: TOKEN });
  assert.deepEqual(
    { status: mixed.status, body: mixed.body },
    { status: 400, body: { status: "error", error: "Invalid message.", problems: [`[1]: ${reason}`] } },
  );
  await client.expectNothing(300);
});

test("publish: an array of messages is delivered in order; data may be null", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using a = await subscribed(shoal, "open.a");
  await using b = await subscribed(shoal, "open.b");

  const messages = [
    { subscription: "open.a", data: 1 },
    { subscription: "open.b", data: "to b" },
    { subscription: "open.a", data: { two: 2 } },
    { subscription: "open.a", data: null },
    { subscription: "open.nobody", data: "dropped" },
    { subscription: "open.a", data: [3] },
  ];
  const answer = await publish(shoal, messages, { token: TOKEN });
  assert.deepEqual(answer, { status: 200, contentType: "application/json", body: { status: "ok", published: 6 } });

  const atA = [];
  for (let i = 0; i < 4; i++) atA.push(deliveredMessage(await a.next()));
  assert.deepEqual(atA, [
    { event: "message", subscription: "open.a", data: 1 },
    { event: "message", subscription: "open.a", data: { two: 2 } },
    { event: "message", subscription: "open.a", data: null },
    { event: "message", subscription: "open.a", data: [3] },
  ]);
  assert.deepEqual(deliveredMessage(await b.next()), { event: "message", subscription: "open.b", data: "to b" });
  await a.expectNothing(200);
  await b.expectNothing(0);
});

test("publish: 404 when no publish.token is configured", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN });
  await using client = await subscribed(shoal);

  const answer = await publish(shoal, { subscription: "open.a", data: 1 }, { token: TOKEN });
  assert.deepEqual(answer, {
    status: 404,
    contentType: "application/json",
    body: { status: "error", error: "The publish API is disabled: set publish.token in the config." },
  });
  await client.expectNothing(300);
});

test("publish: 413 over publish.maxBodyBytes; a body at the limit is accepted", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN, maxBodyBytes: 200 } });
  await using client = await subscribed(shoal);

  const sized = (bytes: number) => {
    const base = JSON.stringify({ subscription: "open.a", data: "" });
    return JSON.stringify({ subscription: "open.a", data: "x".repeat(bytes - base.length) });
  };
  assert.equal(sized(201).length, 201);
  const tooBig = await publish(shoal, sized(201), { token: TOKEN });
  assert.deepEqual(
    { status: tooBig.status, body: tooBig.body },
    { status: 413, body: { status: "error", error: "Body larger than 200 bytes." } },
  );
  await client.expectNothing(200);

  const body = sized(200);
  const atLimit = await publish(shoal, body, { token: TOKEN });
  assert.deepEqual({ status: atLimit.status, body: atLimit.body }, { status: 200, body: { status: "ok", published: 1 } });
  const frame = deliveredMessage(await client.next());
  assert.deepEqual(frame, { event: "message", subscription: "open.a", data: JSON.parse(body).data });
});
