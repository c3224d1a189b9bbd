import { getLogger } from "@logtape/logtape";
import { createClient, createCluster, type RedisClientOptions } from "redis";
import type { RedisBrokerConfig, RedisClusterBrokerConfig } from "../config.ts";
import { backoffDelay, type Clock, raceTimeout, systemClock } from "../core/clock.ts";
import { errorText, scrubUrl } from "../log.ts";
import type { Appended, Broker, BrokerHandlers, BrokerStatus, HistoryOptions, HistoryState } from "./broker.ts";
import { type LuaScript, runScript } from "./history_script.ts";
import { ReceiveQueue } from "./receive_queue.ts";
import { ScriptStore } from "./script_store.ts";
import type { PresenceChange, PresenceExpiry, PresenceSnapshot } from "../core/presence_tracker.ts";

const log = getLogger(["shoal", "broker"]);

/** Per-command timeout (node-redis 6 defaults to 5 s; set here so it is a decision, not an accident). */
const COMMAND_TIMEOUT_MS = 5000;


type Listener = (message: string, channel: string) => void;

/**
 * Answers that waiting cannot cure: wrong credentials, a missing password, no permission, a database number the
 * server does not have. Start-up fails with them at once instead of retrying until `connectTimeout`.
 */
const SETUP_ERROR = /^(?:Error: )?(?:WRONGPASS|NOAUTH|NOPERM|ERR (?:invalid password|DB index is out of range|invalid DB index|AUTH <password> called without any password configured|Client sent AUTH, but no password is set))/i;

/** True for a Redis error that means the broker's URL or credentials are wrong. */
export function isSetupError(error: unknown): boolean {
  return SETUP_ERROR.test(errorText(error));
}

/**
 * One pub/sub source: a Redis server (subscriber and publisher connections) or a Redis Cluster. Channels given to
 * a link are full Redis channel names (prefix included).
 */
export interface Link {
  /** The credential-scrubbed URL(s), for logs and errors. */
  readonly label: string;
  readonly prefix: string;
  readonly ready: boolean;
  connect(): Promise<void>;
  subscribe(channel: string, listener: Listener): Promise<void>;
  unsubscribe(channel: string, listener: Listener): Promise<void>;
  publish(channel: string, payload: string): Promise<void>;
  /** Run a Lua script where `keys[0]` lives (its cluster node): EVALSHA, then EVAL if the server lacks it. */
  evalScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown>;
  /** `HVALS key` where the key lives (presence reads); a link without it reads through a script. */
  hashValues?(key: string): Promise<string[]>;
  close(): Promise<void>;
}

export interface LinkEvents {
  /** The link connected (again), after node-redis re-subscribed what it had. */
  ready(): void;
  /** The link lost its connection and is reconnecting (or gave up). */
  lost(reason: string): void;
}

/** What the broker gives each link: where to report, and the reconnect policy to hand node-redis. */
export interface LinkContext {
  readonly events: LinkEvents;
  /** node-redis `reconnectStrategy`: ms to wait before attempt `retries` (0 first), or the error to give up with. */
  readonly reconnectStrategy: (retries: number, cause: Error) => number | Error;
}

/** Makes a config's links in order (the Redis server then its `alt`, or the cluster); `context(i)` is link i's. */
export type LinkFactory = (
  config: RedisBrokerConfig | RedisClusterBrokerConfig,
  context: (index: number) => LinkContext,
) => Link[];

export interface RedisBrokerOptions {
  /** Time and randomness of the start-up deadline and the reconnect backoff. */
  readonly clock?: Clock;
  /** Tests pass fake links; by default node-redis ones (`ServerLink`, `ClusterLink`). */
  readonly createLinks?: LinkFactory;
}

type Settings = Pick<
  RedisBrokerConfig,
  "pingInterval" | "pingTimeout" | "connectTimeout" | "maxReconnectDelay" | "onConnectionLoss"
>;

/**
 * node-redis client options shared by every connection: RESP2 (any Redis ≥ 2.8, as SocketShark), explicit command
 * timeout, no maintenance push notifications, commands refused rather than queued while disconnected, and
 * SocketShark's health check: a PING every `pingInterval`, and a connection that stays silent for
 * `pingInterval + pingTimeout` is dropped and reconnected (a half-open TCP connection is detected this way).
 * Reconnects follow the broker's `reconnectStrategy`.
 */
function clientOptions(settings: Settings, reconnectStrategy: LinkContext["reconnectStrategy"]) {
  const healthCheck = settings.pingInterval > 0 && settings.pingTimeout > 0;
  return {
    RESP: 2 as const,
    maintNotifications: "disabled" as const,
    disableOfflineQueue: true,
    commandOptions: { timeout: COMMAND_TIMEOUT_MS },
    ...(healthCheck ? { pingInterval: settings.pingInterval * 1000 } : {}),
    socket: {
      connectTimeout: settings.connectTimeout * 1000,
      ...(healthCheck ? { socketTimeout: (settings.pingInterval + settings.pingTimeout) * 1000 } : {}),
      reconnectStrategy,
    },
  } satisfies RedisClientOptions<never, never, never, 2>;
}

/** Wire a node-redis client's (or cluster node's) connection events to a link's state. */
function watch(
  emitter: { on(event: string, listener: (...args: unknown[]) => void): unknown },
  onReady: () => void,
  onLost: (reason: string) => void,
): void {
  emitter.on("ready", onReady);
  emitter.on("error", (error) => onLost(String(error)));
  emitter.on("reconnecting", () => onLost("reconnecting"));
  emitter.on("terminated", (cause) => onLost(`gave up: ${String(cause)}`));
}

/** One Redis server: a dedicated subscriber connection, and a publisher for `POST /publish`. */
class ServerLink implements Link {
  readonly label: string;
  readonly prefix: string;
  readonly #subscriber;
  readonly #publisher;
  #subscriberReady = false;
  #publisherReady = false;
  /** Both connections were up when last reported: a loss of either is then a loss of the link. */
  #wasReady = false;

  constructor(url: string, prefix: string, settings: Settings, { events, reconnectStrategy }: LinkContext) {
    this.label = scrubUrl(url);
    this.prefix = prefix;
    this.#subscriber = createClient({ ...clientOptions(settings, reconnectStrategy), url });
    this.#publisher = createClient({ ...clientOptions(settings, reconnectStrategy), url });
    // Ready only with both connections: history reads and appends go through the publisher, so a subscriber that
    // is back alone would answer a recovering client "Service unavailable.".
    const update = (reason?: string) => {
      const was = this.#wasReady;
      this.#wasReady = this.ready;
      if (this.#wasReady && !was) events.ready();
      else if (!this.#wasReady && was) events.lost(reason ?? "disconnected");
    };
    watch(this.#subscriber, () => {
      this.#subscriberReady = true;
      update();
    }, (reason) => {
      this.#subscriberReady = false;
      update(reason);
    });
    watch(this.#publisher, () => {
      this.#publisherReady = true;
      update();
    }, (reason) => {
      this.#publisherReady = false;
      update(reason);
    });
  }

  get ready(): boolean {
    return this.#subscriberReady && this.#publisherReady;
  }

  async connect(): Promise<void> {
    await Promise.all([this.#subscriber.connect(), this.#publisher.connect()]);
    // A server that wants a password accepts the connection and refuses every command: ask now (NOAUTH).
    await Promise.all([this.#subscriber.ping(), this.#publisher.ping()]);
  }

  subscribe(channel: string, listener: Listener): Promise<void> {
    return this.#subscriber.subscribe(channel, listener);
  }

  unsubscribe(channel: string, listener: Listener): Promise<void> {
    return this.#subscriber.unsubscribe(channel, listener);
  }

  async publish(channel: string, payload: string): Promise<void> {
    if (!this.#publisherReady) throw new Error(`not connected to ${this.label}`);
    await this.#publisher.publish(channel, payload);
  }

  async evalScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    if (!this.#publisherReady) throw new Error(`not connected to ${this.label}`);
    const options = { keys, arguments: args };
    return await runScript(
      script,
      (sha1) => this.#publisher.evalSha(sha1, options),
      (source) => this.#publisher.eval(source, options),
    );
  }

  async hashValues(key: string): Promise<string[]> {
    if (!this.#publisherReady) throw new Error(`not connected to ${this.label}`);
    return await this.#publisher.hVals(key);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#subscriber, this.#publisher].map((c) => c.isOpen ? c.close() : c.destroy()));
  }
}

/**
 * A Redis Cluster through node-redis `createCluster`. Sharded: SSUBSCRIBE/SPUBLISH, each channel on the shard that
 * owns its slot; otherwise SUBSCRIBE/PUBLISH, which Redis Cluster propagates to every node.
 */
class ClusterLink implements Link {
  readonly label: string;
  readonly prefix: string;
  readonly #cluster;
  readonly #sharded: boolean;
  /** Nodes (host:port) currently disconnected. */
  readonly #down = new Set<string>();
  #connected = false;

  constructor(config: RedisClusterBrokerConfig, { events, reconnectStrategy }: LinkContext) {
    this.label = config.nodes.map(scrubUrl).join(",");
    this.prefix = config.channelPrefix;
    this.#sharded = config.sharded;
    this.#cluster = createCluster({
      rootNodes: config.nodes.map((url) => ({ url })),
      defaults: clientOptions(config, reconnectStrategy),
      RESP: 2,
      useReplicas: false,
    });
    const node = (info: unknown) => {
      const { host, port } = info as { host?: string; port?: number };
      return `${host}:${port}`;
    };
    this.#cluster.on("node-ready", (info: unknown) => {
      const wasReady = this.ready;
      this.#down.delete(node(info));
      if (!wasReady && this.ready) events.ready();
    });
    const lost = (info: unknown, reason: string) => {
      const wasReady = this.ready;
      this.#down.add(node(info));
      if (wasReady) events.lost(`${node(info)}: ${reason}`);
    };
    this.#cluster.on("node-error", (error: unknown, info: unknown) => lost(info, String(error)));
    this.#cluster.on("node-reconnecting", (info: unknown) => lost(info, "reconnecting"));
    this.#cluster.on("error", (error: unknown) => log.warn("redis cluster error", { error: String(error) }));
  }

  get ready(): boolean {
    return this.#connected && this.#down.size === 0;
  }

  async connect(): Promise<void> {
    await this.#cluster.connect();
    this.#connected = true;
  }

  subscribe(channel: string, listener: Listener): Promise<void> {
    return this.#sharded ? this.#cluster.sSubscribe(channel, listener) : this.#cluster.subscribe(channel, listener);
  }

  unsubscribe(channel: string, listener: Listener): Promise<void> {
    // One channel at a time: sUnsubscribe() without arguments crashes in node-redis 6.3.1.
    return this.#sharded ? this.#cluster.sUnsubscribe(channel, listener as never) : this.#cluster.unsubscribe(channel, listener as never);
  }

  async publish(channel: string, payload: string): Promise<void> {
    await (this.#sharded ? this.#cluster.sPublish(channel, payload) : this.#cluster.publish(channel, payload));
  }

  /** node-redis sends a script to the master owning the slot of its first key (following MOVED). */
  evalScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const options = { keys, arguments: args };
    return runScript(
      script,
      (sha1) => this.#cluster.evalSha(sha1, options),
      (source) => this.#cluster.eval(source, options),
    );
  }

  /** Sent to the master owning the key's slot. */
  hashValues(key: string): Promise<string[]> {
    return this.#cluster.hVals(key);
  }

  async close(): Promise<void> {
    try {
      await this.#cluster.close();
    } catch {
      this.#cluster.destroy();
    }
  }
}

/** The node-redis links of a config. */
function createLinks(
  config: RedisBrokerConfig | RedisClusterBrokerConfig,
  context: (index: number) => LinkContext,
): Link[] {
  if (config.kind === "redis-cluster") return [new ClusterLink(config, context(0))];
  const links: Link[] = [new ServerLink(config.url, config.channelPrefix, config, context(0))];
  if (config.alt) links.push(new ServerLink(config.alt.url, config.alt.channelPrefix, config, context(1)));
  return links;
}

/**
 * Redis pub/sub as SocketShark uses it (docs/protocol.md §10.1): channel = prefix + subscription name, SUBSCRIBE on the first local
 * subscriber and UNSUBSCRIBE on the last, every channel on each configured Redis (`alt` for migrations). Unlike
 * SocketShark it survives outages (decision 8): node-redis reconnects with backoff and re-subscribes what it had;
 * channels subscribed while disconnected are subscribed when the connection is back; readiness is false meanwhile.
 * With `onConnectionLoss: "shutdown"` a loss is reported as fatal instead.
 */
export class RedisBroker implements Broker {
  readonly #links: Link[];
  readonly #settings: Settings;
  readonly #clock: Clock;
  /** SPUBLISH on a sharded cluster: a history's keys must then share its channel's slot. */
  readonly #store: ScriptStore;
  readonly #state = { connected: false, startedAt: 0 };
  /** Subscription names wanted by the hub. */
  readonly #channels = new Set<string>();
  /** Per link: subscription names whose SUBSCRIBE succeeded (node-redis re-subscribes these after a reconnect). */
  readonly #live: Set<string>[];
  readonly #listeners: Listener[];
  #handlers: BrokerHandlers | undefined;
  #queue: ReceiveQueue | undefined;
  #ready = false;
  #closed = false;

  constructor(config: RedisBrokerConfig | RedisClusterBrokerConfig, options: RedisBrokerOptions = {}) {
    this.#settings = config;
    this.#clock = options.clock ?? systemClock;
    const reconnectStrategy = (retries: number, cause: Error) => this.#reconnectDelay(retries, cause);
    this.#links = (options.createLinks ?? createLinks)(config, (index) => ({
      events: { ready: () => void this.#linkReady(index), lost: (reason) => this.#linkLost(index, reason) },
      reconnectStrategy,
    }));
    const publishCommand = config.kind === "redis-cluster" && config.sharded ? "SPUBLISH" : "PUBLISH";
    this.#store = new ScriptStore(this.#links[0], publishCommand);
    this.#live = this.#links.map(() => new Set());
    this.#listeners = this.#links.map((link) => (payload: string, channel: string) => {
      const name = channel.slice(link.prefix.length);
      if (this.#channels.has(name)) this.#queue?.push(name, payload);
    });
  }

  get ready(): boolean {
    return this.#ready && !this.#closed;
  }

  get channels(): ReadonlySet<string> {
    return this.#channels;
  }

  async start(handlers: BrokerHandlers): Promise<void> {
    this.#handlers = handlers;
    this.#queue = new ReceiveQueue((message) => handlers.onMessage(message));
    this.#state.startedAt = this.#clock.now();
    const seconds = this.#settings.connectTimeout;
    // One deadline for every link together.
    const deadline = this.#state.startedAt + seconds * 1000;
    const late = () => {
      throw new Error(`no connection within ${seconds} s`);
    };
    try {
      for (const link of this.#links) {
        try {
          await raceTimeout(link.connect(), deadline - this.#clock.now(), late, this.#clock);
        } catch (error) {
          throw new Error(`cannot connect to Redis at ${link.label}: ${errorText(error)}`);
        }
      }
    } catch (error) {
      await Promise.allSettled(this.#links.map((link) => link.close()));
      throw error;
    }
    this.#state.connected = true;
    // Each link's first `ready` came inside connect(), before the line above: subscribe what was asked before start.
    await Promise.all(this.#links.map((link, i) => link.ready ? this.#resync(i) : undefined));
    this.#updateStatus();
  }

  async subscribe(channel: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    this.#channels.add(channel);
    // A link that is down subscribes when it is back (#linkReady); the subscription is accepted meanwhile.
    await Promise.all(this.#links.map((link, i) => link.ready ? this.#subscribeOn(i, channel) : undefined));
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#channels.delete(channel);
    await Promise.all(this.#links.map((link, i) => link.ready ? this.#unsubscribeOn(i, channel) : undefined));
  }

  /** Publish on the first Redis (the HTTP publish API); services publishing themselves may use either. */
  async publish(channel: string, payload: string): Promise<void> {
    if (this.#closed) throw new Error("broker closed");
    const link = this.#links[0];
    await link.publish(link.prefix + channel, payload);
  }

  /**
   * Histories and presence live on the first Redis, where `publish` goes (the scripts of `ScriptStore`): every
   * node sharing it sees one history and one presence per subscription.
   */
  async append(
    channel: string,
    payload: string,
    history: HistoryOptions & { readonly idempotencyKey?: string },
  ): Promise<Appended> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.append(this.#links[0].prefix + channel, payload, history);
  }

  async history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.history(this.#links[0].prefix + channel, history, since);
  }

  async updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.updatePresence(this.#links[0].prefix + channel, change);
  }

  async readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry> {
    if (this.#closed) throw new Error("broker closed");
    return await this.#store.readPresence(this.#links[0].prefix + channel);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    this.#queue?.clear();
    await Promise.allSettled(this.#links.map((link) => link.close()));
  }

  /**
   * Backoff for node-redis: before the first connection, no spread and no wait past `connectTimeout`, then give up
   * so start-up fails fast (at once for wrong credentials or database: `isSetupError`); after it, exponential up to `maxReconnectDelay`, or give up at once under "shutdown".
   */
  #reconnectDelay(retries: number, cause: Error): number | Error {
    if (!this.#state.connected) {
      if (isSetupError(cause)) return cause;
      const waited = this.#clock.now() - this.#state.startedAt;
      if (waited >= this.#settings.connectTimeout * 1000) return cause;
      return backoffDelay(retries, { maxMs: this.#settings.connectTimeout * 1000 - waited, jitterMs: 0 });
    }
    if (this.#settings.onConnectionLoss === "shutdown") return cause;
    return backoffDelay(retries, { maxMs: this.#settings.maxReconnectDelay * 1000, random: () => this.#clock.random() });
  }

  async #subscribeOn(index: number, channel: string): Promise<void> {
    const link = this.#links[index];
    await link.subscribe(link.prefix + channel, this.#listeners[index]);
    this.#live[index].add(channel);
    // Unsubscribed while the SUBSCRIBE was in flight: undo it.
    if (!this.#channels.has(channel)) await this.#unsubscribeOn(index, channel);
  }

  async #unsubscribeOn(index: number, channel: string): Promise<void> {
    if (!this.#live[index].delete(channel)) return;
    const link = this.#links[index];
    await link.unsubscribe(link.prefix + channel, this.#listeners[index]);
  }

  /** A link is (back) up: bring its channels in line with what the hub wants, then report readiness. */
  async #linkReady(index: number): Promise<void> {
    if (!this.#state.connected || this.#closed) return;
    log.info("redis connected", { url: this.#links[index].label, channels: this.#channels.size });
    await this.#resync(index);
    this.#updateStatus();
  }

  /** Subscribe on a link what the hub wants and it lacks, unsubscribe what the hub no longer wants. */
  async #resync(index: number): Promise<void> {
    const live = this.#live[index];
    const work: Promise<void>[] = [];
    for (const channel of this.#channels) if (!live.has(channel)) work.push(this.#subscribeOn(index, channel));
    for (const channel of live) if (!this.#channels.has(channel)) work.push(this.#unsubscribeOn(index, channel));
    const results = await Promise.allSettled(work);
    for (const result of results) {
      if (result.status === "rejected") log.error("redis re-subscribe failed", { error: errorText(result.reason) });
    }
  }

  #linkLost(index: number, reason: string): void {
    if (!this.#state.connected || this.#closed) return;
    log.warn("redis connection lost", { url: this.#links[index].label, reason });
    if (this.#settings.onConnectionLoss === "shutdown") {
      this.#ready = false;
      this.#handlers?.onStatus?.({ ready: false, reason: `redis connection lost: ${reason}`, fatal: true });
      return;
    }
    this.#updateStatus(reason);
  }

  #updateStatus(reason?: string): void {
    const ready = this.#links.every((link) => link.ready);
    if (ready === this.#ready) return;
    this.#ready = ready;
    const status: BrokerStatus = ready ? { ready } : { ready, reason: reason ?? "redis disconnected" };
    this.#handlers?.onStatus?.(status);
  }
}
