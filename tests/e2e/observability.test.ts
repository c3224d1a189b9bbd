// Metrics, logs, health and SHOAL_* environment overrides, observed from outside the real server process.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { deliveredMessage, publish } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const TOKEN = "observability-token";

/** Prometheus text → sample name with labels → value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

function sample(samples: Map<string, number>, name: string): number | undefined {
  return samples.get(name);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test("metrics: a scripted session gives exact counter values; callback histograms have buckets", async () => {
  await using service = await TestService.start();
  service
    .on("/ticket", { status: "ok", user_id: 7 })
    .on("/authorize", { status: "ok" }, { status: "error", error: "no" })
    .on("/on_message", { status: "ok", data: "echo" });
  await using shoal = await ShoalProcess.start({
    authentication: { ticket: { validationUrl: service.url("/ticket"), authFields: ["user_id"] } },
    services: { books: { authorizer: service.url("/authorize"), onMessage: service.url("/on_message") } },
    publish: { token: TOKEN },
    metrics: { prometheus: {} },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "auth", method: "ticket", ticket: "t" });
  assert.deepEqual(await client.next(), { event: "auth", status: "ok" });
  client.send({ event: "subscribe", subscription: "books.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "books.a" });
  client.send({ event: "subscribe", subscription: "books.b" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "error", error: "no", subscription: "books.b" });
  client.send({ event: "message", subscription: "books.a", data: 1 });
  assert.deepEqual(await client.next(), { event: "message", status: "ok", data: "echo", subscription: "books.a" });
  client.send({ event: "ping" });
  assert.deepEqual(await client.next(), { event: "pong", data: null });
  client.send({ nope: 1 });
  await client.next();
  client.send({ event: "dance" });
  await client.next();
  assert.equal((await publish(shoal, [{ subscription: "books.a", data: 1 }, { subscription: "books.a", data: 2, options: { order: 0 } }, { subscription: "books.a", data: 3, options: { order: -1 } }], { token: TOKEN })).status, 200);
  deliveredMessage(await client.next());
  deliveredMessage(await client.next());
  await client.expectNothing(200);

  const m = await scrape(`${shoal.httpUrl}/metrics`);
  const expected: Record<string, number> = {
    shoal_service_state: 1,
    shoal_connection_count: 1,
    shoal_connection_total: 1,
    'shoal_event_success_counter{event="auth",status="success"}': 1,
    'shoal_event_success_counter{event="subscribe",status="success"}': 1,
    'shoal_event_success_counter{event="subscribe",status="error"}': 1,
    'shoal_event_success_counter{event="message",status="success"}': 1,
    'shoal_event_success_counter{event="ping",status="success"}': 1,
    'shoal_event_success_counter{event="invalid",status="error"}': 1,
    'shoal_event_success_counter{event="unknown",status="error"}': 1,
    shoal_messages_received_total: 3,
    shoal_messages_delivered_total: 2,
    'shoal_messages_filtered_total{reason="order"}': 1,
    'shoal_messages_filtered_total{reason="fields"}': 0,
    'shoal_messages_filtered_total{reason="throttle"}': 0,
    'shoal_connections_dropped_total{reason="backpressure"}': 0,
    shoal_broker_disconnects_total: 0,
    'shoal_callback_duration_seconds_count{callback="ticket",outcome="ok"}': 1,
    'shoal_callback_duration_seconds_count{callback="authorizer",outcome="ok"}': 1,
    'shoal_callback_duration_seconds_count{callback="authorizer",outcome="error"}': 1,
    'shoal_callback_duration_seconds_count{callback="on_message",outcome="ok"}': 1,
  };
  for (const [name, value] of Object.entries(expected)) assert.equal(sample(m, name), value, name);
  assert.equal(sample(m, 'shoal_callback_duration_seconds_bucket{le="+Inf",callback="authorizer",outcome="ok"}'), 1);
  assert.equal(sample(m, 'shoal_callback_duration_seconds_bucket{le="0.1",callback="authorizer",outcome="ok"}'), 1);
  assert.ok([...m.keys()].some((k) => k.startsWith("process_cpu_user_seconds_total")), "default process metrics");

  await client.close();
  await shoal.waitForLog((l) => l.message === "connection closed", 5000);
  const after = await scrape(`${shoal.httpUrl}/metrics`);
  assert.equal(sample(after, "shoal_connection_count"), 0);
  assert.equal(sample(after, "shoal_connection_total"), 1);
});

test("metrics: a separate listener with metrics.prometheus.port and SocketShark's names with prefix socketshark", async () => {
  await using shoal = await ShoalProcess.start({ metrics: { prometheus: { port: 0, prefix: "socketshark" } } });
  const ready = shoal.logsWith("shoal ready")[0];
  assert.equal(ready.runtime, shoal.target === "deno" ? "deno" : "bun");
  assert.match(String(ready.runtime_version), /^\d+\.\d+\.\d+/, "the runtime's own version is logged");
  assert.equal(typeof ready.metrics_port, "number");
  assert.notEqual(ready.metrics_port, shoal.port);
  const m = await scrape(`http://127.0.0.1:${ready.metrics_port}/metrics`);
  assert.equal(sample(m, "socketshark_service_state"), 1);
  assert.equal(sample(m, "socketshark_connection_count"), 0);
  const index = await fetch(`http://127.0.0.1:${ready.metrics_port}/`);
  assert.match(await index.text(), /href="\/metrics"/);
  const onMain = await fetch(`${shoal.httpUrl}/metrics`);
  assert.equal(onMain.status, 404, "the main port does not serve /metrics when metrics have their own port");
  assert.deepEqual(await onMain.json(), { status: "error", error: "Not found: metrics are on metrics.prometheus.port." });
});

test("start-up: the ready line names the config file, the broker and the endpoints; /metrics is 404 when off", async () => {
  await using shoal = await ShoalProcess.start({ publish: { token: "secret" } });
  const ready = shoal.logsWith("shoal ready")[0];
  assert.match(String(ready.config), /config\.ts$/);
  assert.equal(ready.broker, "memory");
  assert.deepEqual(ready.endpoints, ["/healthz", "/readyz", "POST /publish"]);
  const metrics = await fetch(`${shoal.httpUrl}/metrics`);
  assert.equal(metrics.status, 404, "a scraper is told plainly: nothing here");
  assert.deepEqual(await metrics.json(), { status: "error", error: "Not found: metrics are off (metrics.prometheus)." });
});

test("logs: JSON lines, every line about a connection carries its session id, service URLs are scrubbed", async () => {
  await using service = await TestService.start();
  service.on("/before_subscribe", { status: "error", error: "denied" });
  const secretUrl = service.url("/before_subscribe").replace("http://", "http://svcuser:s3cret@");
  await using shoal = await ShoalProcess.start({
    services: { books: { requireAuthentication: false, beforeSubscribe: secretUrl } },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "books.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "error", error: "denied", subscription: "books.a" });
  await client.close();
  await shoal.waitForLog((l) => l.message === "connection closed", 5000);

  const newSession = shoal.logsWith("new session")[0];
  const id = newSession.session;
  assert.equal(typeof id, "string");
  for (const line of shoal.logs) {
    assert.equal(typeof line["@timestamp"], "string");
    assert.match(String(line.level), /^(TRACE|DEBUG|INFO|WARNING|WARN|ERROR|FATAL)$/);
    assert.equal(JSON.stringify(line).includes("s3cret"), false, `credentials leaked: ${JSON.stringify(line)}`);
  }
  const request = shoal.logsWith("http request")[0];
  assert.ok(request, "the service call is logged at debug");
  assert.equal(request.session, id, "the service call line carries the session id");
  assert.equal(request.callback, "before_subscribe");
  assert.match(String(request.url), /^http:\/\/\*+:\*+@127\.0\.0\.1:\d+\/before_subscribe$/);
  assert.equal(shoal.logsWith("client event")[0]?.session, id);
  assert.equal(shoal.logsWith("connection closed")[0]?.session, id);
});

test("health: /healthz stays 200 while /readyz turns 503 during shutdown", async () => {
  await using service = await TestService.start();
  service.on("/on_unsubscribe", { delayMs: 1500, reply: { status: "ok" } });
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, onUnsubscribe: service.url("/on_unsubscribe") } },
  });
  assert.deepEqual(await (await fetch(`${shoal.httpUrl}/readyz`)).json(), { status: "ready", broker: true, stopping: false });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "open.a" });
  await client.next();
  const exited = shoal.stop("SIGTERM");
  await service.waitFor("/on_unsubscribe");
  // The listener stays up until the sessions' callbacks finished: the load balancer sees not-ready meanwhile.
  const ready = await fetch(`${shoal.httpUrl}/readyz`).catch(() => undefined);
  if (ready) {
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { status: "not ready", broker: true, stopping: true });
    const health = await fetch(`${shoal.httpUrl}/healthz`);
    assert.equal(health.status, 200);
  }
  assert.ok(ready, "readyz answered during the drain");
  assert.equal(await exited, 0);
});

test("environment: SHOAL_PORT, SHOAL_PUBLISH_TOKEN and SHOAL_LOG_LEVEL override the config module", async () => {
  const port = await freePort();
  await using shoal = await ShoalProcess.start(
    { services: { open: { requireAuthentication: false } }, publish: { token: "from-config" } },
    { env: { SHOAL_PORT: String(port), SHOAL_PUBLISH_TOKEN: "from-env", SHOAL_LOG_LEVEL: "info" } },
  );
  assert.equal(shoal.port, port);
  assert.equal((await publish(shoal, { subscription: "open.a", data: 1 }, { token: "from-config" })).status, 401);
  assert.equal((await publish(shoal, { subscription: "open.a", data: 1 }, { token: "from-env" })).status, 200);
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "ping" });
  await client.next();
  assert.equal(shoal.logs.some((l) => l.level === "DEBUG"), false, "SHOAL_LOG_LEVEL=info hides debug lines");
});

test("console: GET /console serves the page with its CSP when console.enabled; 404 when off; upgrades still work there", async () => {
  await using on = await ShoalProcess.start({ console: { enabled: true } });
  const page = await fetch(`${on.httpUrl}/console`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  assert.match(await page.text(), /<title>Shoal console<\/title>/);
  assert.deepEqual(on.logsWith("shoal ready")[0].endpoints, ["/healthz", "/readyz", "/console"]);
  await using off = await ShoalProcess.start({});
  const none = await fetch(`${off.httpUrl}/console`);
  assert.equal(none.status, 404);
  assert.deepEqual(await none.json(), { status: "error", error: "Not found: the console is off (console.enabled)." });
  await using client = await WsClient.connect(`ws://127.0.0.1:${off.port}/console`);
  client.send({ event: "ping", data: "x" });
  assert.deepEqual(await client.next(), { event: "pong", data: "x" });
});
