import type { RedisBrokerConfig, RedisClusterBrokerConfig } from "../../src/config.ts";
import type { Link, LinkContext, LinkFactory } from "../../src/broker/redis_broker.ts";
import type { Clock } from "../../src/core/clock.ts";
import type { LuaScript } from "../../src/broker/history_script.ts";

type Listener = Parameters<Link["subscribe"]>[1];

/** A SUBSCRIBE whose reply the test gives: `called` resolves once the link was asked. */
export interface HeldReply {
  readonly called: Promise<void>;
  release(): void;
  fail(error: Error): void;
}

/**
 * A Redis link without Redis, behaving as node-redis 6.3.1 does where the broker can tell:
 * `connect()` emits `ready` before it resolves, and while the server is unreachable it waits each delay the
 * broker's `reconnectStrategy` returns (on the test's clock), rejecting with the strategy's error when it gives up.
 * A dropped connection reports `lost` once (`gave up: …` if the strategy refuses at once), tries again at once, then
 * after each delay. Subscriptions survive a reconnect (node-redis re-subscribes them before `ready`). Commands are
 * refused while disconnected (`disableOfflineQueue`). `close()` cancels a pending wait.
 */
export class FakeLink implements Link {
  readonly label: string;
  readonly prefix: string;
  /** Whether the server accepts connections; a test sets it false to make attempts fail. */
  reachable = true;
  /**
   * SUBSCRIBE, UNSUBSCRIBE, PUBLISH and scripts as sent, e.g. `subscribe p:a`, `evalsha <sha1> <keys…> , <args…>`.
   */
  readonly commands: string[] = [];
  /** The delays waited before reconnect attempts, in order. */
  readonly waits: number[] = [];
  /** Answers a script (what the server would reply); by default scripts fail as an unknown command would. */
  script: (script: LuaScript, keys: string[], args: string[]) => unknown = () => {
    throw new Error("ERR unknown command 'EVALSHA'");
  };
  readonly #clock: Clock;
  readonly #context: LinkContext;
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #held = new Map<string, { promise: Promise<void>; called: () => void }>();
  #open = false;
  #ready = false;
  #timer: unknown;
  #wake: ((error: Error) => void) | undefined;

  constructor(clock: Clock, label: string, prefix: string, context: LinkContext) {
    this.#clock = clock;
    this.label = label;
    this.prefix = prefix;
    this.#context = context;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Connected, connecting or reconnecting: not closed and not given up. */
  get open(): boolean {
    return this.#open;
  }

  /** The channels with a listener, sorted. */
  get subscribed(): string[] {
    return [...this.#listeners.keys()].sort();
  }

  connect(): Promise<void> {
    if (this.#open) return Promise.reject(new Error("Socket already opened"));
    this.#open = true;
    return this.#connect(0);
  }

  /** Hold the reply to the next SUBSCRIBE of `channel` until the test releases it. */
  hold(channel: string): HeldReply {
    let release!: () => void;
    let fail!: (error: Error) => void;
    let called!: () => void;
    const promise = new Promise<void>((resolve, reject) => ((release = resolve), (fail = reject)));
    const asked = new Promise<void>((resolve) => (called = resolve));
    this.#held.set(channel, { promise, called });
    return { called: asked, release, fail };
  }

  async subscribe(channel: string, listener: Listener): Promise<void> {
    this.commands.push(`subscribe ${channel}`);
    this.#offline();
    const held = this.#held.get(channel);
    if (held) {
      this.#held.delete(channel);
      held.called();
      await held.promise;
    }
    const listeners = this.#listeners.get(channel) ?? new Set();
    this.#listeners.set(channel, listeners.add(listener));
  }

  async unsubscribe(channel: string, listener: Listener): Promise<void> {
    this.commands.push(`unsubscribe ${channel}`);
    this.#offline();
    const listeners = this.#listeners.get(channel);
    listeners?.delete(listener);
    if (listeners?.size === 0) this.#listeners.delete(channel);
  }

  /** PUBLISH through this link: its own subscribers receive the message, as from one Redis server. */
  async publish(channel: string, payload: string): Promise<void> {
    this.commands.push(`publish ${channel} ${payload}`);
    if (!this.#ready) throw new Error(`not connected to ${this.label}`);
    this.deliver(channel, payload);
  }

  /** A script, answered by `script`; it may `deliver()` what it publishes. */
  async evalScript(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    this.commands.push(`evalsha ${script.sha1} ${[...keys, ",", ...args].join(" ")}`);
    if (!this.#ready) throw new Error(`not connected to ${this.label}`);
    return await this.script(script, keys, args);
  }

  /** A message arriving from the server (published by anyone): the listeners of `channel` get it if connected. */
  deliver(channel: string, payload: string): void {
    if (!this.#ready) return;
    for (const listener of this.#listeners.get(channel) ?? []) listener(payload, channel);
  }

  /** The connection drops, as a socket error does in node-redis. */
  drop(reason = "socket closed unexpectedly"): void {
    if (!this.#ready) throw new Error("drop() needs a connected link");
    this.#ready = false;
    const cause = new Error(reason);
    const retry = this.#context.reconnectStrategy(0, cause);
    if (retry instanceof Error) {
      this.#open = false;
      this.#context.events.lost(`gave up: ${cause}`);
      return;
    }
    this.#context.events.lost(String(cause));
    // node-redis tries again at once; the first delay is not waited.
    this.#connect(1).catch(() => {});
  }

  close(): Promise<void> {
    this.#open = false;
    this.#ready = false;
    this.#clock.clearTimeout(this.#timer);
    this.#wake?.(new Error("The client is closed"));
    return Promise.resolve();
  }

  async #connect(retries: number): Promise<void> {
    for (;;) {
      if (!this.#open) throw new Error("The client is closed");
      if (this.reachable) {
        this.#ready = true;
        this.#context.events.ready();
        return;
      }
      const delay = this.#context.reconnectStrategy(retries++, new Error(`connect ECONNREFUSED ${this.label}`));
      if (delay instanceof Error) {
        this.#open = false;
        throw delay;
      }
      this.waits.push(delay);
      await new Promise<void>((resolve, reject) => {
        this.#wake = reject;
        this.#timer = this.#clock.setTimeout(() => {
          this.#wake = undefined;
          resolve();
        }, delay);
      });
    }
  }

  #offline(): void {
    if (!this.#ready) throw new Error("The client is offline");
  }
}

/**
 * A `LinkFactory` making fake links as the real one makes node-redis links: the server then its `alt`, or one for
 * a cluster; each labelled with its URL(s). `links` fills when the broker is constructed.
 */
export function fakeLinks(clock: Clock): { links: FakeLink[]; createLinks: LinkFactory } {
  const links: FakeLink[] = [];
  const createLinks = (
    config: RedisBrokerConfig | RedisClusterBrokerConfig,
    context: (index: number) => LinkContext,
  ) => {
    const targets = config.kind === "redis-cluster"
      ? [[config.nodes.join(","), config.channelPrefix]]
      : [[config.url, config.channelPrefix], ...(config.alt ? [[config.alt.url, config.alt.channelPrefix]] : [])];
    for (const [i, [label, prefix]] of targets.entries()) links.push(new FakeLink(clock, label, prefix, context(i)));
    return links;
  };
  return { links, createLinks };
}
