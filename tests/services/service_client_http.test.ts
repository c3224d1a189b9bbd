// The service client against a real HTTP service (node:http) with the runtime's own fetch: what the runtime does
// with redirects and with answers too large to hold, which a fake fetch cannot show.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ServiceClient, type ServiceClientOptions } from "../../src/services/service_client.ts";
import { TestService } from "../support/test_service.ts";

function client(options: Partial<ServiceClientOptions> = {}): ServiceClient {
  return new ServiceClient({ timeout: 20, tries: 1, wait: 0, rateLimitResetHeaderNames: [], ...options });
}

/** Resolve once `condition` holds, polling; reject after `ms`. */
async function eventually(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("a 307 from the ticket endpoint is not followed: the ticket is never re-posted to the other host", async () => {
  await using thief = await TestService.start();
  await using tickets = await TestService.start();
  thief.on("/steal", { status: "ok", user_id: 666 });
  tickets.on("/validate", { http: 307, headers: { location: thief.url("/steal") }, body: "{}" });
  const answer = await client({ tries: 2 }).post(tickets.url("/validate"), { ticket: "secret-ticket" }, "ticket");
  assert.deepEqual(answer, { ok: false });
  assert.equal(tickets.requestsTo("/validate").length, 2, "the redirect was a failed try, retried");
  assert.deepEqual(thief.requests, [], "the ticket went nowhere else");
});

test("a 302 is not turned into a GET whose answer is accepted", async () => {
  await using service = await TestService.start();
  service.on("/auth", { http: 302, headers: { location: service.url("/elsewhere") } });
  service.on("/elsewhere", { status: "ok" });
  assert.deepEqual(await client().post(service.url("/auth"), { subscription: "a.b" }, "authorizer"), { ok: false });
  assert.deepEqual(service.paths(), ["/auth"]);
  assert.equal(service.requests[0].method, "POST");
});

test("a 200 MiB answer with its Content-Length is refused at the header, the connection dropped", async () => {
  await using service = await TestService.start();
  service.on("/huge", { bytes: 200 * 1024 * 1024, contentLength: true });
  const started = Date.now();
  assert.deepEqual(await client().post(service.url("/huge"), {}, "authorizer"), { ok: false });
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  await eventually(() => service.cutShort.includes("/huge"), "the service to see its answer cut short");
});

test("a 200 MiB chunked answer is cut just past maxResponseBytes", async () => {
  await using service = await TestService.start();
  service.on("/huge", { bytes: 200 * 1024 * 1024 });
  const started = Date.now();
  assert.deepEqual(await client({ maxResponseBytes: 256 * 1024 }).post(service.url("/huge"), {}, "authorizer"), {
    ok: false,
  });
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  await eventually(() => service.cutShort.includes("/huge"), "the service to see its answer cut short");
  // Still an answer when it fits.
  service.on("/fits", { bytes: 200 * 1024 });
  const fits = await client({ maxResponseBytes: 256 * 1024 }).post(service.url("/fits"), {}, "authorizer");
  assert.equal(fits.ok, true);
});

test("an endless chunked answer fails once past maxResponseBytes, long before the timeout", async () => {
  await using service = await TestService.start();
  service.on("/endless", { bytes: "endless" });
  const started = Date.now();
  assert.deepEqual(await client({ timeout: 20, tries: 2 }).post(service.url("/endless"), {}, "on_message"), {
    ok: false,
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 5000, `took ${elapsed} ms with a 20 s timeout`);
  assert.equal(service.requestsTo("/endless").length, 2, "the cut answer was a failed try, retried");
  await eventually(() => service.cutShort.length === 2, "the service to see both answers cut short");
});
