import { getLogger } from "@logtape/logtape";
import { Redis } from "@upstash/redis";
import type { UpstashBrokerConfig } from "../config.ts";
import { scrubUrl } from "../services/scrub_url.ts";
import type { Broker, BrokerHandlers } from "./broker.ts";
import { ReceiveQueue } from "./receive_queue.ts";

const log = getLogger(["shoal", "broker"]);

/** One channel's server-sent-event stream and its reconnect state. */
interface Stream {
  readonly channel: string;
  readonly abort: AbortController;
  /** True while the stream is open and Upstash confirmed the SUBSCRIBE. */
  open: boolean;
  failures: number;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * Upstash Redis over HTTP only, for environments without TCP to Redis. Commands (PING, PUBLISH) go through
 * `@upstash/redis`. Subscriptions use Upstash's server-sent-event endpoint, one stream per channel, which Shoal
 * reads itself: the client's `Subscriber` reports neither the end of a stream nor a read error (it stops silently),
 * and it has no reconnect. A stream that ends or fails is re-opened with capped exponential backoff; readiness is
 * false until every stream is open again. Messages published while a stream is down are lost (at-most-once).
 */
export class UpstashBroker implements Broker {
  readonly #config: UpstashBrokerConfig;
  readonly #redis: Redis;
  readonly #label: string;
  readonly #streams = new Map<string, Stream>();
  #handlers: BrokerHandlers | undefined;
  #queue: ReceiveQueue | undefined;
  #started = false;
  #ready = false;
  #closed = false;

  constructor(config: UpstashBrokerConfig) {
    this.#config = config;
    this.#label = scrubUrl(config.url);
    this.#redis = new Redis({
      url: config.url,
      token: config.token,
      // Shoal retries itself; a command fails at once so POST /publish can answer 503.
      retry: { retries: 0 },
      automaticDeserialization: false,
      enableTelemetry: false,
    });
  }

  get ready(): boolean {
    return this.#ready && !this.#closed;
  }

  get channels(): ReadonlySet<string> {
    return new Set(this.#streams.keys());
  }

  async start(handlers: BrokerHandlers): Promise<void> {
    this.#handlers = handlers;
    this.#queue = new ReceiveQueue((message) => {
      if (this.#streams.has(message.channel)) handlers.onMessage(message);
    });
    try {
      await withTimeout(this.#redis.ping(), this.#config.connectTimeout, "no answer");
    } catch (error) {
      throw new Error(`cannot connect to Upstash at ${this.#label}: ${errorText(error)}`);
    }
    this.#started = true;
    this.#setReady();
  }

  /** Resolves once Upstash confirmed the subscription on a new stream. */
  async subscribe(channel: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    const stream: Stream = { channel, abort: new AbortController(), open: false, failures: 0 };
    this.#streams.set(channel, stream);
    const confirmed = new Promise<void>((resolve, reject) => void this.#run(stream, resolve, reject));
    await withTimeout(confirmed, this.#config.connectTimeout, "no subscribe confirmation").catch((error) => {
      this.#stop(stream);
      throw error;
    });
  }

  unsubscribe(channel: string): Promise<void> {
    const stream = this.#streams.get(channel);
    if (stream) this.#stop(stream);
    return Promise.resolve();
  }

  async publish(channel: string, payload: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    await this.#redis.publish(this.#config.channelPrefix + channel, payload);
  }

  close(): Promise<void> {
    this.#closed = true;
    for (const stream of [...this.#streams.values()]) this.#stop(stream);
    this.#queue?.clear();
    return Promise.resolve();
  }

  #stop(stream: Stream): void {
    if (this.#streams.get(stream.channel) === stream) this.#streams.delete(stream.channel);
    clearTimeout(stream.timer);
    stream.abort.abort();
    this.#setReady();
  }

  /** Read one stream until it ends, then schedule a re-open; `confirmed`/`failed` settle the first attempt. */
  async #run(stream: Stream, confirmed?: () => void, failed?: (error: unknown) => void): Promise<void> {
    const name = this.#config.channelPrefix + stream.channel;
    let reason = "stream ended";
    try {
      const response = await fetch(`${this.#config.url.replace(/\/$/, "")}/subscribe/${encodeURIComponent(name)}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.#config.token}`,
          accept: "text/event-stream",
          "cache-control": "no-cache",
        },
        body: "[]",
        signal: stream.abort.signal,
      });
      if (!response.ok || !response.body) {
        throw new Error(`HTTP ${response.status}: ${(await response.text().catch(() => "")).slice(0, 200)}`);
      }
      for await (const line of lines(response.body)) {
        const event = parseEvent(line);
        if (!event) continue;
        if (event.type === "subscribe") {
          stream.open = true;
          stream.failures = 0;
          this.#setReady();
          confirmed?.();
          confirmed = failed = undefined;
        } else if (event.type === "message" && event.channel === name) {
          this.#queue?.push(stream.channel, event.payload);
        }
      }
    } catch (error) {
      reason = errorText(error);
    }
    if (stream.abort.signal.aborted) return;
    stream.open = false;
    if (failed) return failed(new Error(`cannot subscribe ${name} on ${this.#label}: ${reason}`));
    this.#lost(stream, reason);
  }

  #lost(stream: Stream, reason: string): void {
    log.warn("upstash stream lost", { url: this.#label, channel: stream.channel, reason });
    if (this.#config.onConnectionLoss === "shutdown") {
      this.#ready = false;
      this.#handlers?.onStatus?.({ ready: false, reason: `upstash stream lost: ${reason}`, fatal: true });
      return;
    }
    const delay = Math.min(100 * 2 ** stream.failures++, this.#config.maxReconnectDelay * 1000);
    this.#setReady(reason);
    stream.timer = setTimeout(() => void this.#run(stream), delay + Math.floor(Math.random() * 100));
  }

  #setReady(reason?: string): void {
    if (!this.#started || this.#closed) return;
    // A subscription still being confirmed does not make the broker unready; a stream being re-opened does.
    let ready = true;
    for (const stream of this.#streams.values()) if (!stream.open && stream.failures > 0) ready = false;
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) log.info("upstash streams open", { url: this.#label, channels: this.#streams.size });
    this.#handlers?.onStatus?.(ready ? { ready } : { ready, reason: reason ?? "upstash stream lost" });
  }
}

/** The lines of a text stream. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
    }
  }
}

/** `data: <type>,<channel>,<rest>` as Upstash sends it (`subscribe,ch,1`, `message,ch,<payload>`). */
function parseEvent(line: string): { type: string; channel: string; payload: string } | undefined {
  if (!line.startsWith("data:")) return undefined;
  const data = line.slice(5).replace(/^ /, "");
  const first = data.indexOf(",");
  const second = data.indexOf(",", first + 1);
  if (first < 0 || second < 0) return undefined;
  return { type: data.slice(0, first), channel: data.slice(first + 1, second), payload: data.slice(second + 1) };
}

function withTimeout<T>(promise: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
