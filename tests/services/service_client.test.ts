import assert from "node:assert/strict";
import { test } from "node:test";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import type { Clock } from "../../src/core/clock.ts";
import { type CallbackName, type ServiceAnswer, ServiceClient, type ServiceClientOptions } from "../../src/services/service_client.ts";
import { FetchSlots } from "../../src/services/fetch_slots.ts";
import { FakeClock, until } from "../support/fake_clock.ts";
import { ScriptedFetch } from "../support/scripted_fetch.ts";

const URL_A = "http://service.test/callback";

/** One scripted step: a fresh Response each time, a thrown error, or a request that never answers. */
type Step = (() => Response) | { readonly throws: Error } | "hang";

interface Recorded {
  readonly url: string;
  readonly init: RequestInit;
  /** The clock's time when the request was made. */
  readonly at: number;
}

/** A fetch that answers from `steps` in turn (the last one repeats) and records every request with its time. */
class FakeFetch {
  readonly calls: Recorded[] = [];
  readonly #steps: Step[];

  constructor(readonly clock: Clock, steps: Step[]) {
    this.#steps = steps;
  }

  /** Milliseconds between consecutive requests. */
  gaps(): number[] {
    return this.calls.slice(1).map((call, i) => call.at - this.calls[i].at);
  }

  readonly fetch = (async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    this.calls.push({ url: String(input), init: init ?? {}, at: this.clock.now() });
    const step = this.#steps.length > 1 ? this.#steps.shift()! : this.#steps[0];
    if (step === "hang") {
      return await new Promise<Response>((_, reject) => {
        const signal = init?.signal;
        if (signal?.aborted) return reject(signal.reason);
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    }
    if (typeof step !== "function") throw step.throws;
    return step();
  }) as typeof fetch;
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) => () =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const raw = (body: string, contentType: string, status = 200) => () =>
  new Response(body, { status, headers: { "content-type": contentType } });
const status = (code: number, headers: Record<string, string> = {}) => () =>
  new Response(code === 204 ? null : "", { status: code, headers: { "content-type": "application/json", ...headers } });
const networkError: Step = { throws: new TypeError("fetch failed: connection refused") };
const OK = json({ status: "ok", data: { n: 1 } });

interface Observed {
  readonly callback: CallbackName;
  readonly outcome: string;
  readonly seconds: number;
}

function setup(steps: Step[], options: Partial<ServiceClientOptions> = {}) {
  const clock = new FakeClock();
  const fake = new FakeFetch(clock, steps);
  const observed: Observed[] = [];
  const client = new ServiceClient({
    timeout: 15,
    tries: 3,
    wait: 3,
    rateLimitResetHeaderNames: ["X-Rate-Limit-Reset"],
    fetch: fake.fetch,
    clock,
    observe: (callback, outcome, seconds) => observed.push({ callback, outcome, seconds }),
    ...options,
  });
  return { clock, fake, client, observed };
}

/**
 * Post, let exactly `ms` of fake time pass, and return the answer, which must be settled by then: so a test
 * proves both the waits taken and that no further wait is pending.
 */
async function postAfter(
  world: { clock: FakeClock; client: ServiceClient },
  ms: number,
  body: unknown = { subscription: "books.b1" },
  callback: CallbackName = "before_subscribe",
): Promise<ServiceAnswer> {
  let settled: ServiceAnswer | undefined;
  const pending = world.client.post(URL_A, body, callback).then((answer) => (settled = answer));
  await world.clock.advance(ms);
  assert.ok(settled !== undefined, `the call had not finished after ${ms} ms of fake time`);
  await pending;
  assert.equal(world.clock.pending, 0, "a timer is still pending");
  return settled;
}

// ---------------------------------------------------------------- success and the request

test("post: a JSON object answer is returned as the body after one request", async () => {
  const world = setup([json({ status: "ok", data: { n: 1 }, extra: [1, null] })]);
  const answer = await postAfter(world, 0);
  assert.deepEqual(answer, { ok: true, body: { status: "ok", data: { n: 1 }, extra: [1, null] } });
  assert.equal(world.fake.calls.length, 1);
});

test("post: the request is a POST of the exact JSON body with content-type application/json", async () => {
  const world = setup([OK]);
  const body = { subscription: "books.b1", extra: "é\u{1F600}", n: 1.5, nested: { a: [true, null] } };
  await postAfter(world, 0, body);
  assert.equal(world.fake.calls.length, 1);
  const { url, init } = world.fake.calls[0];
  assert.equal(url, URL_A);
  assert.equal(init.method, "POST");
  assert.equal(new Headers(init.headers).get("content-type"), "application/json");
  assert.equal(init.body, JSON.stringify(body));
  assert.deepEqual(JSON.parse(String(init.body)), body);
  assert.ok(init.signal instanceof AbortSignal, "each request carries an abort signal for its timeout");
});

test("post: every try posts the same URL and body", async () => {
  const world = setup([status(500), status(503), OK], { wait: 1 });
  await postAfter(world, 2000, { ticket: "t-1" }, "ticket");
  assert.deepEqual(world.fake.calls.map((c) => [c.url, c.init.method, c.init.body]), [
    [URL_A, "POST", '{"ticket":"t-1"}'],
    [URL_A, "POST", '{"ticket":"t-1"}'],
    [URL_A, "POST", '{"ticket":"t-1"}'],
  ]);
});

test("post: works with the shared ScriptedFetch too (bodies recorded per URL)", async () => {
  const scripted = new ScriptedFetch().on(URL_A, { http: 500 }, { status: "ok", from: "scripted" });
  const clock = new FakeClock();
  const client = new ServiceClient({ timeout: 15, tries: 2, wait: 0.5, rateLimitResetHeaderNames: [], fetch: scripted.fetch, clock });
  const answer = await postAfter({ clock, client }, 500, { subscription: "a.b" });
  assert.deepEqual(answer, { ok: true, body: { status: "ok", from: "scripted" } });
  assert.deepEqual(scripted.bodies(URL_A), [{ subscription: "a.b" }, { subscription: "a.b" }]);
});

// ---------------------------------------------------------------- tries and wait

test("tries=3 with 500 every time: three requests `wait` apart, then unavailable", async () => {
  const world = setup([status(500)]);
  const answer = await postAfter(world, 6000);
  assert.deepEqual(answer, { ok: false });
  assert.equal(world.fake.calls.length, 3);
  assert.deepEqual(world.fake.gaps(), [3000, 3000]);
});

test("tries=0: no request at all, unavailable at once", async () => {
  const world = setup([OK], { tries: 0 });
  const answer = await postAfter(world, 0);
  assert.deepEqual(answer, { ok: false });
  assert.equal(world.fake.calls.length, 0);
  assert.deepEqual(world.observed, [{ callback: "before_subscribe", outcome: "unavailable", seconds: 0 }]);
});

test("tries=1: a single failed request, no wait", async () => {
  const world = setup([status(500)], { tries: 1 });
  assert.deepEqual(await postAfter(world, 0), { ok: false });
  assert.equal(world.fake.calls.length, 1);
});

test("every 4xx and 5xx status is retried", async () => {
  for (const code of [400, 401, 403, 404, 405, 409, 410, 418, 422, 500, 501, 502, 503, 504, 599]) {
    const world = setup([status(code), OK], { tries: 2 });
    const answer = await postAfter(world, 3000);
    assert.deepEqual(answer, { ok: true, body: { status: "ok", data: { n: 1 } } }, `status ${code}`);
    assert.equal(world.fake.calls.length, 2, `status ${code}`);
    assert.deepEqual(world.fake.gaps(), [3000], `status ${code}`);
  }
});

test("an error status with a valid JSON object body is still a failed try", async () => {
  const world = setup([json({ status: "ok", data: "from a 500" }, 500)], { tries: 2 });
  assert.deepEqual(await postAfter(world, 3000), { ok: false });
  assert.equal(world.fake.calls.length, 2);
});

test("a network error is retried", async () => {
  const world = setup([networkError, networkError, OK]);
  const answer = await postAfter(world, 6000);
  assert.equal(answer.ok, true);
  assert.equal(world.fake.calls.length, 3);
  assert.deepEqual(world.fake.gaps(), [3000, 3000]);
});

test("network errors on every try: unavailable, never a throw", async () => {
  const world = setup([{ throws: new Error("boom") }]);
  assert.deepEqual(await postAfter(world, 6000), { ok: false });
  assert.equal(world.fake.calls.length, 3);
});

// ---------------------------------------------------------------- content types and bodies

test("a text/html answer is retried, then unavailable", async () => {
  const world = setup([raw('{"status":"ok"}', "text/html")]);
  assert.deepEqual(await postAfter(world, 6000), { ok: false });
  assert.equal(world.fake.calls.length, 3);
});

test("a non-JSON content type, or none, is a failed try even with a JSON body", async () => {
  const untyped = () => {
    const response = new Response('{"status":"ok"}', { status: 200 });
    response.headers.delete("content-type");
    return response;
  };
  for (const type of ["text/plain", "text/html; charset=utf-8", "application/xml", "application/jsonx", "json", null]) {
    const world = setup([type === null ? untyped : raw('{"status":"ok"}', type), OK], { tries: 2 });
    const answer = await postAfter(world, 3000);
    assert.equal(answer.ok, true, String(type));
    assert.equal(world.fake.calls.length, 2, `${type} should have been retried`);
  }
});

test("application/json with an invalid body is retried and finally unavailable (decision 5)", async () => {
  const world = setup([raw("{not json", "application/json")]);
  assert.deepEqual(await postAfter(world, 6000), { ok: false });
  assert.equal(world.fake.calls.length, 3);
});

test("application/json with an empty body is retried and finally unavailable (decision 5)", async () => {
  const world = setup([raw("", "application/json")]);
  assert.deepEqual(await postAfter(world, 6000), { ok: false });
  assert.equal(world.fake.calls.length, 3);
  const noContent = setup([status(204)], { tries: 2 });
  assert.deepEqual(await postAfter(noContent, 3000), { ok: false });
  assert.equal(noContent.fake.calls.length, 2);
});

test("application/json with a JSON array, string, number, boolean or null is retried and finally unavailable (decision 5)", async () => {
  for (const body of ["[1,2]", "[]", '"ok"', "5", "true", "null"]) {
    const world = setup([raw(body, "application/json")]);
    assert.deepEqual(await postAfter(world, 6000), { ok: false }, body);
    assert.equal(world.fake.calls.length, 3, body);
  }
});

test("a bad body followed by a good one succeeds on the later try", async () => {
  const world = setup([raw("[]", "application/json"), raw("", "application/json"), OK]);
  const answer = await postAfter(world, 6000);
  assert.deepEqual(answer, { ok: true, body: { status: "ok", data: { n: 1 } } });
});

test("application/*+json and parameters on the content type are accepted", async () => {
  for (const type of ["application/vnd.x+json", "application/problem+json", "application/json; charset=utf-8", "application/json;charset=UTF-8"]) {
    const world = setup([raw('{"status":"error","error":"x"}', type)]);
    const answer = await postAfter(world, 0);
    assert.deepEqual(answer, { ok: true, body: { status: "error", error: "x" } }, type);
    assert.equal(world.fake.calls.length, 1, type);
  }
});

test("any JSON object is an answer, whatever its status: the caller interprets it", async () => {
  for (const body of [{}, { status: "error" }, { status: "OK" }, { error: null }]) {
    const world = setup([json(body)]);
    assert.deepEqual(await postAfter(world, 0), { ok: true, body });
    assert.equal(world.fake.calls.length, 1);
  }
});

// ---------------------------------------------------------------- 429

test("429 with X-Rate-Limit-Reset 0.2 waits 200 ms, the header winning over `wait`", async () => {
  const world = setup([status(429, { "X-Rate-Limit-Reset": "0.2" }), json({ status: "ok", data: {} })], { wait: 1 });
  const answer = await postAfter(world, 200);
  assert.deepEqual(answer, { ok: true, body: { status: "ok", data: {} } });
  assert.deepEqual(world.fake.gaps(), [200]);
});

test("429: the header name is matched case-insensitively", async () => {
  const world = setup([status(429, { "x-rate-limit-reset": "1.5" }), OK], { rateLimitResetHeaderNames: ["X-RATE-LIMIT-RESET"] });
  await postAfter(world, 1500);
  assert.deepEqual(world.fake.gaps(), [1500]);
});

test("429: the first header of rateLimitResetHeaderNames present in the answer wins", async () => {
  const names = ["X-Rate-Limit-Reset", "Retry-After"];
  const onlySecond = setup([status(429, { "Retry-After": "0.2" }), OK], { wait: 1, rateLimitResetHeaderNames: names });
  await postAfter(onlySecond, 200);
  assert.deepEqual(onlySecond.fake.gaps(), [200]);

  const both = setup([status(429, { "Retry-After": "5", "X-Rate-Limit-Reset": "0.1" }), OK], { rateLimitResetHeaderNames: names });
  await postAfter(both, 100);
  assert.deepEqual(both.fake.gaps(), [100]);

  const reversed = setup([status(429, { "Retry-After": "5", "X-Rate-Limit-Reset": "0.1" }), OK], {
    rateLimitResetHeaderNames: ["Retry-After", "X-Rate-Limit-Reset"],
  });
  await postAfter(reversed, 5000);
  assert.deepEqual(reversed.fake.gaps(), [5000]);
});

test("429: a header not in rateLimitResetHeaderNames is ignored", async () => {
  const world = setup([status(429, { "Retry-After": "0.2" }), OK], { wait: 2 });
  await postAfter(world, 2000);
  assert.deepEqual(world.fake.gaps(), [2000]);
});

test("429: values above 3600 seconds are capped at 3600", async () => {
  for (const value of ["3601", "7200", "1e9", "Infinity"]) {
    const world = setup([status(429, { "X-Rate-Limit-Reset": value }), OK]);
    await postAfter(world, 3600 * 1000);
    assert.deepEqual(world.fake.gaps(), [3600 * 1000], value);
  }
  const exactly = setup([status(429, { "X-Rate-Limit-Reset": "3600" }), OK]);
  await postAfter(exactly, 3600 * 1000);
  assert.deepEqual(exactly.fake.gaps(), [3600 * 1000]);
});

test("429: Python float() syntax is accepted: whitespace, exponent, underscores, zero", async () => {
  const cases: Array<[string, number]> = [
    [" 1.5 ", 1500],
    ["1e2", 100_000],
    ["1_000", 1_000_000],
    ["0", 0],
    ["+2", 2000],
    [".25", 250],
  ];
  for (const [value, ms] of cases) {
    const world = setup([status(429, { "X-Rate-Limit-Reset": value }), OK], { wait: 7 });
    await postAfter(world, ms);
    assert.deepEqual(world.fake.gaps(), [ms], JSON.stringify(value));
  }
});

test("429: a negative, NaN, unparsable or absent value falls back to the default wait", async () => {
  const headers: Array<Record<string, string>> = [
    { "X-Rate-Limit-Reset": "-1" },
    { "X-Rate-Limit-Reset": "-0.5" },
    { "X-Rate-Limit-Reset": "NaN" },
    { "X-Rate-Limit-Reset": "nan" },
    { "X-Rate-Limit-Reset": "soon" },
    { "X-Rate-Limit-Reset": "1.2.3" },
    { "X-Rate-Limit-Reset": "Wed, 21 Oct 2015 07:28:00 GMT" },
    { "X-Rate-Limit-Reset": "" },
    {},
  ];
  for (const h of headers) {
    const world = setup([status(429, h), OK], { wait: 2 });
    await postAfter(world, 2000);
    assert.deepEqual(world.fake.gaps(), [2000], JSON.stringify(h));
  }
});

test("429: values Python's float() refuses fall back to the default wait, and inf is capped like any huge value", async () => {
  // Python float() rejects hex/binary/octal literals and misplaced underscores, and reads "inf"/"infinity"
  // in any case as infinity, which the spec caps at 3600 s (docs/protocol.md §9.3).
  const cases: Array<[string, number]> = [
    ["0x10", 2000],
    ["0b1", 2000],
    ["0o7", 2000],
    ["1__0", 2000],
    ["_1", 2000],
    ["inf", 3600_000],
    ["INF", 3600_000],
    ["infinity", 3600_000],
  ];
  const wrong: string[] = [];
  for (const [value, ms] of cases) {
    const world = setup([status(429, { "X-Rate-Limit-Reset": value }), OK], { wait: 2 });
    const pending = world.client.post(URL_A, {}, "authorizer");
    await world.clock.advance(3600_000);
    await pending;
    const gap = world.fake.gaps()[0];
    if (gap !== ms) wrong.push(`${JSON.stringify(value)}: waited ${gap} ms, expected ${ms} ms`);
  }
  assert.deepEqual(wrong, []);
});

test("429 on the last try: unavailable with no extra wait", async () => {
  const world = setup([status(429, { "X-Rate-Limit-Reset": "5" })], { tries: 2, wait: 1 });
  const answer = await postAfter(world, 5000);
  assert.deepEqual(answer, { ok: false });
  assert.equal(world.fake.calls.length, 2);
  assert.deepEqual(world.fake.gaps(), [5000]);
  assert.deepEqual(world.observed, [{ callback: "before_subscribe", outcome: "unavailable", seconds: 5 }]);
});

test("429 with a JSON object body is not read as an answer", async () => {
  const world = setup([json({ status: "ok" }, 429, { "X-Rate-Limit-Reset": "0.1" })], { tries: 2 });
  assert.deepEqual(await postAfter(world, 100), { ok: false });
  assert.equal(world.fake.calls.length, 2);
});

test("the 429 wait survives a network error, but an answered try resets it to `wait`", async () => {
  const world = setup(
    [status(429, { "X-Rate-Limit-Reset": "0.2" }), networkError, status(500), status(502), OK],
    { tries: 5, wait: 3 },
  );
  const answer = await postAfter(world, 200 + 200 + 3000 + 3000);
  assert.equal(answer.ok, true);
  assert.deepEqual(world.fake.gaps(), [200, 200, 3000, 3000]);
});

// ---------------------------------------------------------------- timeout and cancellation

test("a hanging request is aborted by the timeout, then retried (real clock)", async () => {
  const fake = new FakeFetch({ now: () => Date.now(), setTimeout, clearTimeout, random: Math.random }, ["hang", "hang", OK]);
  const observed: Observed[] = [];
  const client = new ServiceClient({
    timeout: 0.05,
    tries: 3,
    wait: 0,
    rateLimitResetHeaderNames: [],
    fetch: fake.fetch,
    observe: (callback, outcome, seconds) => observed.push({ callback, outcome, seconds }),
  });
  const started = Date.now();
  const answer = await client.post(URL_A, { ticket: "t" }, "ticket");
  const elapsed = Date.now() - started;
  assert.deepEqual(answer, { ok: true, body: { status: "ok", data: { n: 1 } } });
  assert.equal(fake.calls.length, 3);
  assert.ok(elapsed >= 90, `two 50 ms timeouts took only ${elapsed} ms`);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  for (const call of fake.calls.slice(0, 2)) assert.equal(call.init.signal?.aborted, true);
  assert.equal(observed.length, 1);
  assert.equal(observed[0].outcome, "ok");
});

test("a request hanging on every try ends unavailable after the timeouts (real clock)", async () => {
  const fake = new FakeFetch({ now: () => Date.now(), setTimeout, clearTimeout, random: Math.random }, ["hang"]);
  const client = new ServiceClient({ timeout: 0.05, tries: 2, wait: 0, rateLimitResetHeaderNames: [], fetch: fake.fetch });
  assert.deepEqual(await client.post(URL_A, {}, "authorizer"), { ok: false });
  assert.equal(fake.calls.length, 2);
});

test("a timeout longer than a timer can hold does not fire at once (real clock)", async () => {
  // 30 days: past 2^31 - 1 ms a plain setTimeout would fire after 1 ms and abort every request.
  let answer: (response: Response) => void = () => {};
  const fetchLater = ((_input: RequestInfo | URL, init?: RequestInit) =>
    new Promise<Response>((resolve, reject) => {
      answer = resolve;
      init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
    })) as typeof fetch;
  const client = new ServiceClient({ timeout: 30 * 86400, tries: 1, wait: 0, rateLimitResetHeaderNames: [], fetch: fetchLater });
  const pending = client.post(URL_A, {}, "authorizer");
  await new Promise((resolve) => setTimeout(resolve, 30));
  answer(OK());
  assert.deepEqual(await pending, { ok: true, body: { status: "ok", data: { n: 1 } } });
});

test("an aborted signal stops before the first request", async () => {
  const controller = new AbortController();
  controller.abort();
  const world = setup([OK], { signal: controller.signal });
  assert.deepEqual(await postAfter(world, 0), { ok: false });
  assert.equal(world.fake.calls.length, 0);
});

test("aborting the signal during the wait between tries ends the call without another request", async () => {
  const controller = new AbortController();
  const world = setup([status(500)], { signal: controller.signal, wait: 10 });
  let settled: ServiceAnswer | undefined;
  const pending = world.client.post(URL_A, {}, "on_message").then((a) => (settled = a));
  await world.clock.advance(1000);
  assert.equal(settled, undefined);
  assert.equal(world.fake.calls.length, 1);
  controller.abort();
  await world.clock.advance(0);
  assert.deepEqual(settled, { ok: false });
  await pending;
  assert.equal(world.fake.calls.length, 1);
  assert.equal(world.clock.pending, 0);
});

test("aborting the signal aborts a request in flight", async () => {
  const controller = new AbortController();
  const world = setup(["hang"], { signal: controller.signal, tries: 3 });
  let settled: ServiceAnswer | undefined;
  const pending = world.client.post(URL_A, {}, "on_message").then((a) => (settled = a));
  await world.clock.advance(0);
  assert.equal(world.fake.calls.length, 1);
  assert.equal(settled, undefined);
  controller.abort();
  await world.clock.advance(0);
  assert.deepEqual(settled, { ok: false });
  await pending;
  assert.equal(world.fake.calls.length, 1);
});

// ---------------------------------------------------------------- observe

test("observe: called once per post with the callback, the outcome and the total seconds", async () => {
  const ok = setup([status(500), json({ status: "ok" })], { wait: 1.5 });
  await postAfter(ok, 1500, {}, "authorizer");
  assert.deepEqual(ok.observed, [{ callback: "authorizer", outcome: "ok", seconds: 1.5 }]);

  const error = setup([json({ status: "error", error: "nope" })]);
  await postAfter(error, 0, {}, "on_message");
  assert.deepEqual(error.observed, [{ callback: "on_message", outcome: "error", seconds: 0 }]);

  const missing = setup([json({ data: 1 })]);
  await postAfter(missing, 0, {}, "on_heartbeat");
  assert.deepEqual(missing.observed, [{ callback: "on_heartbeat", outcome: "error", seconds: 0 }]);

  const unavailable = setup([status(503)]);
  await postAfter(unavailable, 6000, {}, "ticket");
  assert.deepEqual(unavailable.observed, [{ callback: "ticket", outcome: "unavailable", seconds: 6 }]);
});

// ---------------------------------------------------------------- redirects (never followed)

test("every request says redirect: manual, so the runtime never follows a redirect", async () => {
  const world = setup([OK]);
  await postAfter(world, 0, { ticket: "t" }, "ticket");
  assert.equal(world.fake.calls[0].init.redirect, "manual");
});

test("a 3xx answer, even with a JSON object body, is a failed try: retried, then unavailable", async () => {
  for (const code of [300, 301, 302, 303, 304, 307, 308]) {
    const redirect = () =>
      new Response(code === 304 ? null : JSON.stringify({ status: "ok", data: "from a redirect" }), {
        status: code,
        headers: { "content-type": "application/json", location: "http://elsewhere.test/steal" },
      });
    const world = setup([redirect, OK], { tries: 2 });
    assert.deepEqual(await postAfter(world, 3000, { ticket: "t" }, "ticket"), { ok: true, body: { status: "ok", data: { n: 1 } } }, `status ${code}`);
    assert.deepEqual(world.fake.calls.map((c) => c.url), [URL_A, URL_A], `status ${code}: only the configured URL is posted to`);
    const always = setup([redirect], { tries: 2 });
    assert.deepEqual(await postAfter(always, 3000), { ok: false }, `status ${code}`);
  }
});

// ---------------------------------------------------------------- maxResponseBytes

/** A JSON answer streamed in `chunkBytes` chunks (no Content-Length); `endless` never closes the string. */
function streamed(totalBytes: number | "endless", options: { chunkBytes?: number; contentLength?: number } = {}) {
  const chunkBytes = options.chunkBytes ?? 1024;
  const stats = { pulled: 0, cancelled: false };
  const make = () => {
    const head = new TextEncoder().encode('{"status":"ok","pad":"');
    const tail = new TextEncoder().encode('"}');
    let left = totalBytes === "endless" ? Infinity : totalBytes - head.length - tail.length;
    let started = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        stats.pulled++;
        if (!started) {
          started = true;
          return controller.enqueue(head);
        }
        if (left <= 0) {
          controller.enqueue(tail);
          return controller.close();
        }
        const size = Math.min(chunkBytes, left);
        left -= size;
        controller.enqueue(new Uint8Array(size).fill(0x78));
      },
      cancel() {
        stats.cancelled = true;
      },
    });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (options.contentLength !== undefined) headers["content-length"] = String(options.contentLength);
    return new Response(body, { status: 200, headers });
  };
  return { make, stats };
}

test("maxResponseBytes: a body of exactly the limit is an answer; one byte more is a failed try", async () => {
  const exact = streamed(4096);
  const fits = setup([exact.make], { maxResponseBytes: 4096, tries: 1 });
  const answer = await postAfter(fits, 0);
  assert.ok(answer.ok);
  assert.equal(String(answer.body.pad).length, 4096 - '{"status":"ok","pad":""}'.length);

  const over = streamed(4097);
  const refused = setup([over.make, OK], { maxResponseBytes: 4096, tries: 2 });
  assert.deepEqual(await postAfter(refused, 3000), { ok: true, body: { status: "ok", data: { n: 1 } } });
  assert.equal(refused.fake.calls.length, 2, "the oversized answer was retried");
});

test("maxResponseBytes: an endless body is cut just past the limit, not read until the timeout", async () => {
  const endless = streamed("endless", { chunkBytes: 1000 });
  const world = setup([endless.make], { maxResponseBytes: 10_000, tries: 1 });
  assert.deepEqual(await postAfter(world, 0), { ok: false });
  assert.equal(endless.stats.cancelled, true);
  assert.ok(endless.stats.pulled <= 13, `read ${endless.stats.pulled} chunks of 1000 bytes for a 10,000-byte limit`);
});

test("maxResponseBytes: a declared Content-Length over the limit is refused before the body is read", async () => {
  const declared = streamed(2000, { contentLength: 2000 });
  const world = setup([declared.make], { maxResponseBytes: 1000, tries: 1 });
  assert.deepEqual(await postAfter(world, 0), { ok: false });
  assert.equal(declared.stats.cancelled, true);
  assert.ok(declared.stats.pulled <= 1, `pulled ${declared.stats.pulled} chunks of a body already known to be too long`);
});

test("maxResponseBytes defaults to http.maxResponseBytes (1 MiB)", async () => {
  const big = streamed(1024 * 1024 + 1, { chunkBytes: 64 * 1024 });
  assert.deepEqual(await postAfter(setup([big.make], { tries: 1 }), 0), { ok: false });
  const fits = streamed(1024 * 1024, { chunkBytes: 64 * 1024 });
  assert.equal((await postAfter(setup([fits.make], { tries: 1 }), 0)).ok, true);
});

// ---------------------------------------------------------------- maxCallbacksPerService

/** A fetch whose requests hang until released one by one (or aborted), recording each request's URL. */
class HeldFetch {
  readonly urls: string[] = [];
  readonly #held: Array<(response: Response) => void> = [];

  get held(): number {
    return this.#held.length;
  }

  /** Answer the oldest held request with OK. */
  answerOne(): void {
    this.#held.shift()?.(OK());
  }

  readonly fetch = ((input: RequestInfo | URL, init?: RequestInit) =>
    new Promise<Response>((resolve, reject) => {
      this.urls.push(String(input));
      const signal = init?.signal;
      if (signal?.aborted) return reject(signal.reason);
      const answer = (response: Response) => resolve(response);
      this.#held.push(answer);
      signal?.addEventListener("abort", () => {
        this.#held.splice(this.#held.indexOf(answer), 1);
        reject(signal.reason);
      }, { once: true });
    })) as typeof fetch;
}

/** Wait until `fetch` holds `count` requests. */
const holding = (fetch: HeldFetch, count: number) => until(() => fetch.held === count, `${count} requests held`);

test("maxCallbacksPerService: past the bound a call fails at once without a request; other services still go through", async () => {
  const held = new HeldFetch();
  const refusals: CallbackName[] = [];
  const client = new ServiceClient({
    timeout: 60,
    tries: 3,
    wait: 1,
    rateLimitResetHeaderNames: [],
    maxCallbacksPerService: 2,
    fetch: held.fetch,
    onRefused: (callback, reason) => void (reason === "callbacks" && refusals.push(callback)),
  });
  const first = [client.post(URL_A, {}, "authorizer", { service: "A" }), client.post(URL_A, {}, "authorizer", { service: "A" })];
  await holding(held, 2);
  const started = Date.now();
  assert.deepEqual(await client.post(URL_A, {}, "authorizer", { service: "A" }), { ok: false });
  assert.ok(Date.now() - started < 100, "the refused call did not wait");
  assert.equal(held.urls.length, 2, "a refused call sends no request");
  assert.deepEqual(refusals, ["authorizer"]);

  // Another service (by name, or by origin when unnamed) is not affected by A's bound.
  const other = client.post(URL_A, {}, "authorizer", { service: "B" });
  const otherOrigin = client.post("http://other.test/auth", {}, "ticket");
  await holding(held, 4);
  // Unnamed calls are keyed by origin: the path does not matter, the host and port do.
  const sameOrigin = [client.post("http://other.test/a", {}, "ticket"), client.post("http://other.test/b", {}, "ticket")];
  assert.deepEqual(await sameOrigin[1], { ok: false });
  await holding(held, 5);

  // Once a call of A ends, A has room again.
  while (held.held > 0) held.answerOne();
  await Promise.all([...first, other, otherOrigin, sameOrigin[0]]);
  const again = client.post(URL_A, {}, "authorizer", { service: "A" });
  await holding(held, 1);
  held.answerOne();
  assert.equal((await again).ok, true);
});

test("maxCallbacksPerService counts a call through its retries and waits, not only while a request is out", async () => {
  const world = setup([status(500)], { maxCallbacksPerService: 1, wait: 10 });
  const first = world.client.post(URL_A, {}, "on_message");
  await world.clock.advance(1000); // the first call is now waiting between tries
  assert.deepEqual(await world.client.post(URL_A, {}, "on_message"), { ok: false });
  assert.equal(world.fake.calls.length, 1);
  await world.clock.advance(19_000);
  assert.deepEqual(await first, { ok: false });
  assert.equal(world.fake.calls.length, 3);
});

// ---------------------------------------------------------------- the caller's signal

test("the caller's signal aborts a request in flight: no retry, no other request", async () => {
  const world = setup(["hang"], { tries: 3 });
  const controller = new AbortController();
  let settled: ServiceAnswer | undefined;
  const pending = world.client.post(URL_A, {}, "authorizer", { signal: controller.signal }).then((a) => (settled = a));
  await world.clock.advance(0);
  assert.equal(world.fake.calls.length, 1);
  controller.abort();
  await world.clock.advance(0);
  assert.deepEqual(settled, { ok: false });
  await pending;
  await world.clock.advance(60_000);
  assert.equal(world.fake.calls.length, 1);
  assert.equal(world.fake.calls[0].init.signal?.aborted, true);
});

test("the caller's signal ends the wait between tries; an already aborted one sends nothing", async () => {
  const world = setup([status(500)], { wait: 10 });
  const controller = new AbortController();
  let settled: ServiceAnswer | undefined;
  const pending = world.client.post(URL_A, {}, "on_message", { signal: controller.signal }).then((a) => (settled = a));
  await world.clock.advance(1000);
  assert.equal(settled, undefined);
  controller.abort();
  await world.clock.advance(0);
  assert.deepEqual(settled, { ok: false });
  await pending;
  assert.equal(world.fake.calls.length, 1);
  assert.equal(world.clock.pending, 0, "the wait's timer was cleared");

  const aborted = setup([OK]);
  assert.deepEqual(await aborted.client.post(URL_A, {}, "on_message", { signal: AbortSignal.abort() }), { ok: false });
  assert.equal(aborted.fake.calls.length, 0);
});

test("one caller's signal cancels only its own call", async () => {
  const held = new HeldFetch();
  const client = new ServiceClient({ timeout: 60, tries: 1, wait: 0, rateLimitResetHeaderNames: [], fetch: held.fetch });
  const gone = new AbortController();
  const cancelled = client.post(URL_A, {}, "on_unsubscribe", { signal: gone.signal });
  const kept = client.post(URL_A, {}, "on_unsubscribe", { signal: new AbortController().signal });
  await holding(held, 2);
  gone.abort();
  assert.deepEqual(await cancelled, { ok: false });
  assert.equal(held.held, 1);
  held.answerOne();
  assert.equal((await kept).ok, true);
});

// ---------------------------------------------------------------- the process-wide fetch budget

test("an attempt's timeout starts when it gets a slot of the fetch budget, not while it queues for one (real clock)", async () => {
  // A runtime pool of one request at a time, as Bun's pool is of 256: a request queued inside it would see
  // its timer running. With a budget of one slot the second call waits in Shoal, timer not started.
  let busy = false;
  const queued: Array<() => void> = [];
  const pool = (async (_input: RequestInfo | URL, init?: RequestInit) => {
    while (busy) await new Promise<void>((resolve) => queued.push(resolve));
    busy = true;
    try {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, 120);
        init?.signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(init.signal!.reason);
        }, { once: true });
      });
      return OK();
    } finally {
      busy = false;
      queued.shift()?.();
    }
  }) as typeof fetch;
  const client = new ServiceClient({
    timeout: 0.2,
    tries: 1,
    wait: 0,
    rateLimitResetHeaderNames: [],
    fetch: pool,
    slots: new FetchSlots(1),
  });
  const answers = await Promise.all([client.post(URL_A, {}, "authorizer"), client.post("http://b.test/", {}, "ticket")]);
  assert.deepEqual(answers.map((a) => a.ok), [true, true], "the queued call was not timed out by its wait for a slot");
});

test("a call waiting for a slot of the fetch budget is cancelled by its signal", async () => {
  const held = new HeldFetch();
  const slots = new FetchSlots(1);
  const client = new ServiceClient({ timeout: 60, tries: 1, wait: 0, rateLimitResetHeaderNames: [], fetch: held.fetch, slots });
  const first = client.post(URL_A, {}, "authorizer");
  const gone = new AbortController();
  const waiting = client.post("http://b.test/", {}, "authorizer", { signal: gone.signal });
  await until(() => slots.waiting === 1, "a call waiting for a slot");
  gone.abort();
  assert.deepEqual(await waiting, { ok: false });
  assert.equal(slots.waiting, 0);
  assert.deepEqual(held.urls, [URL_A]);
  held.answerOne();
  await first;
  assert.equal(slots.used, 0);
});

// ---------------------------------------------------------------- abandoned (for the shutdown report)

test("abandoned counts calls that ended without an answer: failed, refused or cancelled", async () => {
  const held = new HeldFetch();
  const shutdown = new AbortController();
  const client = new ServiceClient({
    timeout: 60,
    tries: 1,
    wait: 0,
    rateLimitResetHeaderNames: [],
    maxCallbacksPerService: 2,
    fetch: held.fetch,
    signal: shutdown.signal,
  });
  assert.equal(client.abandoned, 0);
  const answered = client.post(URL_A, {}, "on_subscribe");
  await holding(held, 1);
  held.answerOne();
  assert.equal((await answered).ok, true);
  assert.equal(client.abandoned, 0, "an answered call is not abandoned");

  const gone = new AbortController();
  const cancelled = client.post(URL_A, {}, "on_unsubscribe", { signal: gone.signal });
  const atShutdown = client.post(URL_A, {}, "on_unsubscribe");
  await holding(held, 2);
  assert.deepEqual(await client.post(URL_A, {}, "on_unsubscribe"), { ok: false }); // refused by the bound
  assert.equal(client.abandoned, 1);
  gone.abort();
  await cancelled;
  assert.equal(client.abandoned, 2);
  shutdown.abort();
  await atShutdown;
  assert.equal(client.abandoned, 3);

  const failing = setup([status(500)], { tries: 1 });
  await postAfter(failing, 0);
  assert.equal(failing.client.abandoned, 1);
});

test("a cancelled call logs nothing at warn level; a refused burst logs one line; a redirect one per try", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record) => records.push(record) },
    loggers: [{ category: ["shoal"], lowestLevel: "info", sinks: ["memory"] }, { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] }],
  });
  try {
    const warnings = () => records.filter((r) => r.level === "warning").map((r) => r.message.join(""));
    const world = setup(["hang"], { tries: 3, maxCallbacksPerService: 1 });
    const gone = new AbortController();
    const cancelled = world.client.post(URL_A, {}, "on_unsubscribe", { signal: gone.signal });
    await world.clock.advance(0);
    for (let i = 0; i < 5; i++) assert.deepEqual(await world.client.post(URL_A, {}, "on_unsubscribe"), { ok: false });
    assert.deepEqual(warnings(), ["too many callbacks in flight to one service; refusing more"]);
    records.length = 0;
    gone.abort();
    assert.deepEqual(await cancelled, { ok: false });
    assert.deepEqual(warnings(), []);

    const redirected = setup([status(307, { location: "http://elsewhere.test/" })], { tries: 2, wait: 0 });
    await postAfter(redirected, 0, { ticket: "t" }, "ticket");
    assert.deepEqual(warnings(), ["service answered a redirect (not followed)", "service answered a redirect (not followed)"]);
    assert.equal(records.find((r) => r.level === "warning")?.properties.status, 307);
  } finally {
    await reset();
  }
});
