// Fuzzing the real server (short, seeded): random and adversarial client frames, service answers and published
// messages. The process must stay up, every frame must get an answer the contract allows for it (or close the
// connection with a contract code), deliveries must be exactly those the contract routes, and once every client
// is gone the connection gauge and Redis' channels must be back to zero. A failure names the seed:
// SHOAL_FUZZ_SEED=<seed> replays the same frames. The long run is bench/fuzz.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  fuzzSeed,
  fuzzWorld,
  leakCheck,
  livenessProblem,
  report,
  Rng,
  runClosingFrames,
  runFrameFuzz,
  runPublishFuzz,
  scriptServices,
  serverErrors,
  type Violation,
} from "../support/fuzz.ts";
import { RedisServer } from "../support/redis_server.ts";
import { ShoalProcess, shoalTarget } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const SEED = fuzzSeed();
const TARGET = shoalTarget();

/** Redis, the scripted service and Shoal on the fuzz config, for one test. */
async function world(seed: number) {
  const redis = await RedisServer.start();
  const service = await TestService.start();
  const world = fuzzWorld({ service, redisUrl: redis.url });
  scriptServices(service, new Rng(seed).fork("services"));
  const shoal = await ShoalProcess.start(world.config);
  return {
    redis,
    service,
    world,
    shoal,
    async [Symbol.asyncDispose]() {
      await shoal.kill();
      await service.close();
      await redis.close();
    },
  };
}

/** After the clients: the process is up, nothing leaked, and it logged no caught bug. */
async function aftermath(w: Awaited<ReturnType<typeof world>>): Promise<string[]> {
  const problems = (await leakCheck(w.shoal, w.redis.port)).map((p) => `leak after every client left: ${p}`);
  const alive = await livenessProblem(w.shoal);
  if (alive) problems.push(alive);
  problems.push(...serverErrors(w.shoal).map((line) => `the server logged an error: ${line}`));
  return problems;
}

function assertClean(violations: readonly Violation[], problems: readonly string[]): void {
  assert.ok(violations.length === 0 && problems.length === 0, report(SEED, TARGET, violations, problems));
}

test(`fuzz: 600 random and hostile client frames get contract answers; nothing leaks`, async () => {
  await using w = await world(SEED);
  const { violations } = await runFrameFuzz({
    shoal: w.shoal,
    world: w.world,
    rng: new Rng(SEED),
    connections: 8,
    framesPerConnection: 75,
    label: `${TARGET} seed ${SEED}`,
  });
  assertClean(violations, await aftermath(w));
});

test(`fuzz: garbage published through POST /publish and Redis PUBLISH; deliveries are exact; nothing leaks`, async () => {
  await using w = await world(SEED);
  const { violations } = await runPublishFuzz({
    shoal: w.shoal,
    world: w.world,
    redisPort: w.redis.port,
    rng: new Rng(SEED),
    clients: 4,
    batches: 12,
    label: `${TARGET} seed ${SEED}`,
  });
  assertClean(violations, await aftermath(w));
});

test("fuzz: a message past 1 MiB (text, binary, fragmented) closes the connection with 1009", async () => {
  await using w = await world(SEED);
  const { violations } = await runClosingFrames({
    shoal: w.shoal,
    world: w.world,
    rng: new Rng(SEED),
    label: TARGET,
    only: (frame) => frame.codes.includes(1009),
  });
  assertClean(violations, await aftermath(w));
});

// RFC 6455 §8.1 and the spec (§2.2) say 1007. RUNTIME-NOTES: Deno drops such a connection without a close frame.
test("fuzz: a text frame that is not UTF-8 closes the connection with 1007", async () => {
  await using w = await world(SEED);
  const { violations } = await runClosingFrames({
    shoal: w.shoal,
    world: w.world,
    rng: new Rng(SEED),
    label: TARGET,
    only: (frame) => frame.codes.includes(1007),
  });
  assertClean(violations, await aftermath(w));
});

/** JSON with keys sorted at every level; own `__proto__` keys included. */
function sortedJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "undefined";
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
}

// Found by the fuzzer (it leaves the `proto` service out unless asked: this case fails on every runtime). Shoal
// drops the keys "__proto__", "constructor" and "prototype" from client frames and published messages (valibot's
// object schemas skip them), so a service whose extraFields/filterFields name them never sees, echoes or matches
// them.
// The config accepts such names; the contract (SocketShark §2.5, §4.3) echoes and matches any extra field.
test("fuzz finding: extra and filter fields named __proto__ and constructor are echoed and matched", async () => {
  await using w = await world(SEED);
  const problems: string[] = [];
  const check = (what: string, got: unknown, expected: string) => {
    if (sortedJson(got) !== sortedJson(JSON.parse(expected))) {
      problems.push(`${what}: got ${JSON.stringify(got)}, expected ${expected}`);
    }
  };
  await using a = await WsClient.connect(w.shoal.url);
  await using b = await WsClient.connect(w.shoal.url);
  a.send('{"event":"subscribe","subscription":"proto.a","__proto__":{"x":1},"constructor":"c"}');
  check(
    "subscribe with both fields",
    await a.next(),
    '{"event":"subscribe","status":"ok","__proto__":{"x":1},"constructor":"c","subscription":"proto.a"}',
  );
  b.send('{"event":"subscribe","subscription":"proto.a"}');
  check("subscribe without them", await b.next(), '{"event":"subscribe","status":"ok","subscription":"proto.a"}');
  a.send('{"event":"unsubscribe","subscription":"proto.zz","constructor":"c"}');
  check(
    "an error echoes the request's extra fields",
    await a.next(),
    '{"event":"unsubscribe","status":"error","error":"Subscription does not exist.","constructor":"c","subscription":"proto.zz"}',
  );

  const publish = async (text: string) => {
    const response = await fetch(`${w.shoal.httpUrl}/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${w.world.publishToken}`, "content-type": "application/json" },
      body: text,
    });
    await response.text();
  };
  // Filter field __proto__: {"x":2} matches nobody, {"x":1} only a, null only b (who lacks the field).
  await publish('{"subscription":"proto.a","data":"for nobody","__proto__":{"x":2}}');
  await publish('{"subscription":"proto.a","data":"for a","__proto__":{"x":1}}');
  await publish('{"subscription":"proto.a","data":"for b","__proto__":null}');
  await publish('{"subscription":"proto.a","data":"end"}');
  const received = async (client: WsClient) => {
    const data: unknown[] = [];
    for (;;) {
      const frame = await client.next(5000);
      if (frame.data === "end") return data;
      data.push(frame.data);
    }
  };
  check("deliveries to a", await received(a), '["for a"]');
  check("deliveries to b", await received(b), '["for b"]');
  assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join("\n")}`);
});
