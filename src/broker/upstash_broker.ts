import { getLogger } from "@logtape/logtape";
import { Redis } from "@upstash/redis";
import type { UpstashBrokerConfig } from "../config.ts";
import { FETCH_BUDGET, FetchSlots } from "../services/fetch_slots.ts";
import { backoffDelay, withTimeout } from "../core/clock.ts";
import { errorText, scrubUrl } from "../log.ts";
import type { Appended, Broker, BrokerHandlers, HistoryOptions, HistoryState } from "./broker.ts";
import { runScript } from "./history_script.ts";
import { ReceiveQueue } from "./receive_queue.ts";
import { ScriptStore } from "./script_store.ts";
import type { PresenceChange, PresenceExpiry, PresenceSnapshot } from "../core/presence_tracker.ts";

const log = getLogger(["shoal", "broker"]);

/** A subscribe call waiting for its stream's confirmation. */
interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/** One server-sent-event stream (a channel's own, or the shared pattern stream) and its reconnect state. */
interface Stream {
  readonly kind: "subscribe" | "psubscribe";
  /** The subscription name of a channel's own stream; the Redis pattern of the shared one. */
  readonly channel: string;
  readonly abort: AbortController;
  /** True while the stream is open and Upstash confirmed the SUBSCRIBE (PSUBSCRIBE). */
  open: boolean;
  /** Upstash confirmed it once: from then on a failure re-opens it instead of failing the subscribe. */
  confirmed: boolean;
  failures: number;
  timer?: ReturnType<typeof setTimeout>;
  readonly waiters: Set<Waiter>;
}

/**
 * Bun's fetch cuts a streaming body that stays idle for about 5 minutes (measured: 360 s on Bun 1.4.5, a
 * `TimeoutError`), so a quiet channel lost its stream, readiness and the messages of the gap. `timeout: false` is
 * Bun's switch for it (the same stream stayed open past 400 s); Deno has no such timeout and ignores the option.
 */
const STREAM_FETCH: Pick<RequestInit, "method" | "body"> & { readonly timeout: false } = {
  method: "POST",
  body: "[]",
  timeout: false,
};

/**
 * Upstash Redis over HTTP only, for environments without TCP to Redis. Commands (PING, PUBLISH) go through
 * `@upstash/redis`. Subscriptions use Upstash's server-sent-event endpoints, which Shoal reads itself: the
 * client's `Subscriber` reports neither the end of a stream nor a read error (it stops silently), and it has no
 * reconnect. A stream that ends or fails is re-opened with capped exponential backoff; readiness is false until
 * every stream is open again. Messages published while a stream is down are lost (at-most-once).
 *
 * Every stream is a fetch held open for good, and Bun runs at most 256 fetches per process: one stream per
 * channel let a client holding 256 channels take the whole pool, after which no callback or PUBLISH could run.
 * So streams have a fixed share of the pool (`FETCH_BUDGET`): the first `upstashStreams` channels get a stream
 * of their own (`SUBSCRIBE`), and every channel past them rides one shared stream (`PSUBSCRIBE <prefix>*`) that
 * carries them all, the messages of other channels under the prefix being dropped on arrival (more traffic for
 * a node holding many channels, never more streams). A channel keeps the stream it started on until it is
 * unsubscribed; the shared stream closes with its last channel. Commands have their own share, queued in Shoal
 * past it, so a burst of POST /publish cannot starve callbacks either.
 */
export class UpstashBroker implements Broker {
  readonly #config: UpstashBrokerConfig;
  readonly #redis: Redis;
  readonly #store: ScriptStore;
  readonly #label: string;
  /** Channels with a stream of their own. */
  readonly #streams = new Map<string, Stream>();
  /** Channels carried by the shared stream. */
  readonly #sharedChannels = new Set<string>();
  #shared: Stream | undefined;
  readonly #commands = new FetchSlots(FETCH_BUDGET.upstashCommands);
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
    const redis = this.#redis;
    const commands = this.#commands;
    this.#store = new ScriptStore({
      evalScript: (script, keys, args) =>
        runScript(
          script,
          (sha1) => commands.run(() => redis.evalsha(sha1, keys, args)),
          (source) => commands.run(() => redis.eval(source, keys, args)),
        ),
      hashValues: (key) => commands.run(() => redis.hvals(key)) as Promise<string[]>,
    }, "PUBLISH");
  }

  get ready(): boolean {
    return this.#ready && !this.#closed;
  }

  get channels(): ReadonlySet<string> {
    return new Set([...this.#streams.keys(), ...this.#sharedChannels]);
  }

  async start(handlers: BrokerHandlers): Promise<void> {
    this.#handlers = handlers;
    this.#queue = new ReceiveQueue((message) => {
      if (this.#streams.has(message.channel) || this.#sharedChannels.has(message.channel)) handlers.onMessage(message);
    });
    try {
      await withTimeout(this.#commands.run(() => this.#redis.ping()), this.#config.connectTimeout, "no answer");
    } catch (error) {
      throw new Error(`cannot connect to Upstash at ${this.#label}: ${errorText(error)}`);
    }
    this.#started = true;
    this.#setReady();
  }

  /** Resolves once Upstash confirmed the subscription: on a new stream, or on the shared one. */
  async subscribe(channel: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    if (this.#streams.size < FETCH_BUDGET.upstashStreams) {
      const stream = this.#open("subscribe", channel);
      this.#streams.set(channel, stream);
      await this.#confirmation(stream).catch((error) => {
        this.#stop(stream);
        throw error;
      });
      return;
    }
    this.#sharedChannels.add(channel);
    const shared = this.#shared ??= this.#open("psubscribe", escapeGlob(this.#config.channelPrefix) + "*");
    if (shared.open) return;
    await this.#confirmation(shared).catch((error) => {
      this.#leaveShared(channel);
      throw error;
    });
  }

  unsubscribe(channel: string): Promise<void> {
    const stream = this.#streams.get(channel);
    if (stream) this.#stop(stream);
    else this.#leaveShared(channel);
    return Promise.resolve();
  }

  async publish(channel: string, payload: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    await this.#commands.run(() => this.#redis.publish(this.#config.channelPrefix + channel, payload));
  }

  /**
   * The redis broker's history and presence scripts (`ScriptStore`) over the REST API; an append's envelope reaches
   * subscribers through their streams.
   */
  async append(
    channel: string,
    payload: string,
    history: HistoryOptions & { readonly idempotencyKey?: string },
  ): Promise<Appended> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.append(this.#config.channelPrefix + channel, payload, history);
  }

  async history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.history(this.#config.channelPrefix + channel, history, since);
  }

  async updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.updatePresence(this.#config.channelPrefix + channel, change);
  }

  async readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.readPresence(this.#config.channelPrefix + channel);
  }

  close(): Promise<void> {
    this.#closed = true;
    for (const stream of [...this.#streams.values()]) this.#stop(stream);
    this.#sharedChannels.clear();
    if (this.#shared) this.#stop(this.#shared);
    this.#queue?.clear();
    return Promise.resolve();
  }

  #open(kind: Stream["kind"], channel: string): Stream {
    const stream: Stream = {
      kind,
      channel,
      abort: new AbortController(),
      open: false,
      confirmed: false,
      failures: 0,
      waiters: new Set(),
    };
    void this.#run(stream);
    return stream;
  }

  /** Resolves at the stream's next confirmation; rejects after the connect timeout or if the stream fails first. */
  #confirmation(stream: Stream): Promise<void> {
    let waiter: Waiter | undefined;
    const confirmed = new Promise<void>((resolve, reject) => {
      waiter = { resolve, reject };
      stream.waiters.add(waiter);
    });
    return withTimeout(confirmed, this.#config.connectTimeout, "no subscribe confirmation")
      .finally(() => stream.waiters.delete(waiter!));
  }

  #leaveShared(channel: string): void {
    if (!this.#sharedChannels.delete(channel)) return;
    if (this.#sharedChannels.size === 0 && this.#shared) this.#stop(this.#shared);
  }

  #stop(stream: Stream): void {
    if (this.#streams.get(stream.channel) === stream) this.#streams.delete(stream.channel);
    if (this.#shared === stream) this.#shared = undefined;
    clearTimeout(stream.timer);
    stream.abort.abort();
    for (const waiter of stream.waiters) waiter.reject(new Error("unsubscribed"));
    this.#setReady();
  }

  /** Read one stream until it ends, then schedule a re-open (or fail its waiters if it was never confirmed). */
  async #run(stream: Stream): Promise<void> {
    const name = stream.kind === "subscribe" ? this.#config.channelPrefix + stream.channel : stream.channel;
    const confirmation = `${stream.kind},${name},`;
    const message = `${stream.kind === "subscribe" ? "message" : "pmessage"},${name},`;
    let reason = "stream ended";
    try {
      const response = await fetch(
        `${this.#config.url.replace(/\/$/, "")}/${stream.kind}/${encodeURIComponent(name)}`,
        {
          ...STREAM_FETCH,
          headers: {
            authorization: `Bearer ${this.#config.token}`,
            accept: "text/event-stream",
            "cache-control": "no-cache",
          },
          signal: stream.abort.signal,
        },
      );
      if (!response.ok || !response.body) {
        throw new Error(`HTTP ${response.status}: ${(await response.text().catch(() => "")).slice(0, 200)}`);
      }
      for await (const line of lines(response.body)) {
        const data = eventData(line);
        if (data === undefined) continue;
        if (data.startsWith(message)) this.#received(stream, data.slice(message.length));
        else if (data.startsWith(confirmation)) this.#confirmed(stream);
      }
    } catch (error) {
      reason = errorText(error);
    }
    if (stream.abort.signal.aborted) return;
    stream.open = false;
    if (stream.confirmed) return this.#lost(stream, reason);
    const error = new Error(`cannot ${stream.kind} ${name} on ${this.#label}: ${reason}`);
    for (const waiter of stream.waiters) waiter.reject(error);
    this.#stop(stream);
  }

  #confirmed(stream: Stream): void {
    stream.open = true;
    stream.confirmed = true;
    stream.failures = 0;
    this.#setReady();
    for (const waiter of stream.waiters) waiter.resolve();
    stream.waiters.clear();
  }

  /** `rest` is the payload on a channel's own stream, `<channel>,<payload>` on the shared one. */
  #received(stream: Stream, rest: string): void {
    if (stream.kind === "subscribe") return this.#queue?.push(stream.channel, rest);
    // A channel name may hold commas: the channel is the shortest start of `rest` that names a shared channel.
    // Channels with a stream of their own are not shared channels, so nothing is delivered twice.
    const prefix = this.#config.channelPrefix;
    if (!rest.startsWith(prefix)) return;
    for (let comma = rest.indexOf(",", prefix.length); comma >= 0; comma = rest.indexOf(",", comma + 1)) {
      const channel = rest.slice(prefix.length, comma);
      if (this.#sharedChannels.has(channel)) return this.#queue?.push(channel, rest.slice(comma + 1));
    }
  }

  #lost(stream: Stream, reason: string): void {
    log.warn("upstash stream lost", { url: this.#label, channel: stream.channel, reason });
    if (this.#config.onConnectionLoss === "shutdown") {
      this.#ready = false;
      this.#handlers?.onStatus?.({ ready: false, reason: `upstash stream lost: ${reason}`, fatal: true });
      return;
    }
    const delay = backoffDelay(stream.failures++, { maxMs: this.#config.maxReconnectDelay * 1000 });
    this.#setReady(reason);
    stream.timer = setTimeout(() => void this.#run(stream), delay);
  }

  #setReady(reason?: string): void {
    if (!this.#started || this.#closed) return;
    // A subscription still being confirmed does not make the broker unready; a stream being re-opened does.
    let ready = !this.#shared || this.#shared.open || this.#shared.failures === 0;
    for (const stream of this.#streams.values()) if (!stream.open && stream.failures > 0) ready = false;
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) {
      log.info("upstash streams open", { url: this.#label, channels: this.#streams.size + this.#sharedChannels.size });
    }
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

/**
 * The text of a `data:` line. Upstash sends each event as one such line: `subscribe,<channel>,<count>`,
 * `message,<channel>,<payload>`, `psubscribe,<pattern>,<count>`, `pmessage,<pattern>,<channel>,<payload>`.
 */
function eventData(line: string): string | undefined {
  return line.startsWith("data:") ? line.slice(5).replace(/^ /, "") : undefined;
}

/** A Redis glob pattern matching `text` literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}
