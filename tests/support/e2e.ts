import assert from "node:assert/strict";
import type { RedisCluster, RedisServer } from "./redis_server.ts";
import type { ShoalProcess } from "./shoal_process.ts";
import { type Frame, WsClient } from "./ws_client.ts";

/** ISO-8601 in UTC, as Shoal writes `received_at` and `sent_at` (`2026-01-02T03:04:05.123000+00:00`). */
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|\+00:00)$/;

/** Assert that `value` is an ISO-8601 UTC timestamp within a minute of now. */
export function assertRecentTimestamp(value: unknown, what: string): void {
  assert.equal(typeof value, "string", `${what} should be a string, got ${JSON.stringify(value)}`);
  assert.match(value as string, ISO_UTC, `${what} is not ISO-8601 UTC`);
  const ms = Date.parse(value as string);
  assert.ok(Math.abs(Date.now() - ms) < 60_000, `${what} ${value} is not within a minute of now`);
}

/**
 * A delivered message with its variable fields checked and removed: `sent_at` (always), `received_at` and
 * `queue_size` (required when `live`, absent otherwise). What is left can be compared with `deepEqual`.
 */
export function deliveredMessage(frame: Frame, options: { live: boolean } = { live: true }): Frame {
  const { sent_at, received_at, queue_size, ...rest } = frame;
  assertRecentTimestamp(sent_at, "sent_at");
  if (options.live) {
    assertRecentTimestamp(received_at, "received_at");
    assert.ok(
      Number.isInteger(queue_size) && (queue_size as number) >= 0,
      `queue_size should be a non-negative integer, got ${JSON.stringify(queue_size)}`,
    );
  } else {
    assert.equal(received_at, undefined, "a buffered or throttled message has no received_at");
    assert.equal(queue_size, undefined, "a buffered or throttled message has no queue_size");
  }
  return rest;
}

/** What `POST /publish` answered. */
export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string | null;
  /** Parsed JSON, or the text when it is not JSON. */
  readonly body: unknown;
}

/** Read a fetch response whole. */
export async function readAnswer(response: Response): Promise<HttpAnswer> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // kept as text
  }
  return { status: response.status, contentType: response.headers.get("content-type"), body };
}

/**
 * `POST /publish` as `curl -H "Authorization: Bearer TOKEN" --data-binary JSON` would: `body` is sent as JSON
 * unless it is a string; `token: null` sends no Authorization header; `authorization` sets the header verbatim.
 */
export async function publish(
  shoal: ShoalProcess,
  body: unknown,
  options: { token?: string | null; authorization?: string } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  else if (options.token !== null && options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(`${shoal.httpUrl}/publish`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return readAnswer(response);
}

/** A client subscribed to `subscription` (the full name, service prefix included), with the subscribe OK taken. */
export async function subscribed(shoal: ShoalProcess, subscription = "open.a"): Promise<WsClient> {
  const client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription });
  return client;
}

/**
 * Poll `condition` (real time) every `every` ms until it holds; fails naming `what` after `ms`.
 * Defaults: 5 s, every 20 ms.
 */
export async function eventually(
  condition: () => Promise<boolean> | boolean,
  what: string,
  options: { ms?: number; every?: number } = {},
): Promise<void> {
  const { ms = 5000, every = 20 } = options;
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** The status `GET /readyz` answers (200 ready, 503 not). */
export async function readyz(shoal: ShoalProcess): Promise<number> {
  return (await fetch(`${shoal.httpUrl}/readyz`, { signal: AbortSignal.timeout(3000) })).status;
}

/** Poll `GET /readyz` every 50 ms until it answers `status`; fails after `ms`. */
export async function waitReady(shoal: ShoalProcess, status: 200 | 503, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await readyz(shoal) === status) return;
    if (Date.now() > end) throw new Error(`readyz never answered ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The text `GET /metrics` answers on the main port. */
export async function metricsText(shoal: ShoalProcess): Promise<string> {
  return await (await fetch(`${shoal.httpUrl}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
}

/** A Redis server's `PUBSUB CHANNELS`, as a sorted list. */
export async function channels(redis: RedisServer): Promise<string[]> {
  return (await redis.command("PUBSUB", "CHANNELS") as string[]).slice().sort();
}

/** Every shard channel subscribed anywhere in the cluster (`PUBSUB SHARDCHANNELS` on each running node), sorted. */
export async function shardChannels(cluster: RedisCluster): Promise<string[]> {
  const all: string[] = [];
  for (const node of cluster.nodes) {
    if (node.running) all.push(...await node.command("PUBSUB", "SHARDCHANNELS") as string[]);
  }
  return all.sort();
}
