import { getLogger } from "@logtape/logtape";
import type { Broker, BrokerStatus } from "../broker/broker.ts";
import type { Config } from "../config.ts";
import { Closes } from "../protocol/close_codes.ts";
import { debugEnabled } from "../log.ts";
import { ServiceClient } from "../services/service_client.ts";
import { Activity } from "./activity.ts";
import { type Clock, raceTimeout, systemClock } from "./clock.ts";
import { CONTROL_CHANNEL } from "./control_message.ts";
import { Hub } from "./hub.ts";
import type { Observer } from "./observer.ts";
import { type PresenceData, PresenceTracker } from "./presence_tracker.ts";
import type { CoreContext, TokenVerifier } from "./context.ts";
import { SESSION_HANDLERS } from "./events.ts";
import { Session } from "./session.ts";
import type { Transport } from "./transport.ts";
import type { BrokerMessage } from "../broker/broker.ts";

const log = getLogger(["shoal", "router"]);

/** What `Router.presence()` answers (extension E3): the `data` of a `presence` reply. */
export type { PresenceData } from "./presence_tracker.ts";

/** What the router needs of the admin API's control module (`control.ts`): its channel's messages, and a stop. */
export interface ControlReceiver {
  receive(message: BrokerMessage): void;
  close(): Promise<void>;
}

/** How long cancelled callbacks get to settle after the drain timeout, milliseconds. */
const SETTLE_MS = 1000;

export interface RouterOptions {
  readonly config: Config;
  readonly broker: Broker;
  /** Defaults to a client built from `config.http`. */
  readonly services?: ServiceClient;
  /** The fetch that client uses (the runtime's own, or one trusting `http.caFile`). */
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  readonly observer?: Observer;
  /** Verifies JWTs when `authentication.jwt` is configured (built by the caller: key import is asynchronous). */
  readonly tokens?: TokenVerifier;
  /** The broker gave up (`onConnectionLoss: "shutdown"`): the caller shuts the server down. */
  readonly onFatal?: (reason: string) => void;
}

/**
 * The composition of the core: it owns the hub, the broker and the service client, creates a session per
 * connection and shuts everything down in order.
 */
export class Router implements CoreContext {
  readonly config: Config;
  readonly clock: Clock;
  readonly observer: Observer;
  readonly services: ServiceClient;
  readonly hub: Hub;
  readonly broker: Broker;
  readonly history: Broker;
  readonly tokens: TokenVerifier | undefined;
  readonly activity = new Activity();
  /** This node's presence entries (extension E3), kept in the broker. */
  readonly presenceTracker: PresenceTracker;
  readonly #sessions = new Set<Session>();
  readonly #shutdown = new AbortController();
  /** This node's id among the nodes sharing the broker; every session id starts with it. */
  readonly nodeId = Math.random().toString(36).slice(2, 8);
  #nextId = 0;
  #control: ControlReceiver | undefined;
  #stopping: Promise<void> | undefined;
  #brokerReady = false;
  readonly #onFatal: ((reason: string) => void) | undefined;

  constructor(options: RouterOptions) {
    this.config = options.config;
    this.clock = options.clock ?? systemClock;
    this.observer = options.observer ?? {};
    this.broker = options.broker;
    this.history = options.broker;
    this.tokens = options.tokens;
    this.#onFatal = options.onFatal;
    this.services = options.services ?? new ServiceClient({
      ...options.config.http,
      maxResponseBytes: options.config.http.maxResponseBytes,
      maxCallbacksPerService: options.config.limits.maxCallbacksPerService,
      fetch: options.fetch,
      clock: this.clock,
      signal: this.#shutdown.signal,
      observe: (callback, outcome, seconds) => this.observer.callback?.(callback, outcome, seconds),
      onRefused: (_callback, reason) => this.observer.refused?.(reason),
    });
    this.hub = new Hub(options.broker, { clock: this.clock, observer: this.observer, activity: this.activity });
    this.presenceTracker = new PresenceTracker(options.broker, {
      clock: this.clock,
      observer: this.observer,
      activity: this.activity,
      publish: (channel, payload) => options.broker.publish(channel, payload),
    });
  }

  /** Connect the broker; messages flow to the hub from then on. */
  async start(): Promise<void> {
    await this.broker.start({
      // The control channel (admin API, extension E4) is no subscription: its messages never reach the hub.
      onMessage: (message) =>
        message.channel === CONTROL_CHANNEL ? this.#control?.receive(message) : this.hub.deliver(message),
      onStatus: (status) => this.#brokerStatus(status),
    });
  }

  /** Ready to serve: the broker receives and no shutdown has begun. */
  get ready(): boolean {
    return this.#brokerReady && this.broker.ready && !this.#stopping;
  }

  get stopping(): boolean {
    return this.#stopping !== undefined;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** This node's sessions (the admin API's control module walks them). */
  sessions(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  /** Pass the control channel's messages to `control` from now on, and close it first at shutdown. */
  useControl(control: ControlReceiver): void {
    this.#control = control;
  }

  /**
   * A new connection; undefined while shutting down or, past `limits.maxConnections` (upgrades that raced past
   * the server's check), when full: the caller closes it.
   */
  connect(transport: Transport): Session | undefined {
    if (this.#stopping) return undefined;
    const { maxConnections } = this.config.limits;
    if (maxConnections > 0 && this.#sessions.size >= maxConnections) {
      this.observer.refused?.("connections");
      return undefined;
    }
    const session = new Session(this, transport, {
      id: `${this.nodeId}-${++this.#nextId}`,
      handlers: SESSION_HANDLERS,
      onClosed: (closed) => this.sessionClosed(closed),
    });
    this.#sessions.add(session);
    this.observer.connectionOpened?.();
    if (debugEnabled()) log.debug("new session", { session: session.id });
    return session;
  }

  /** Called by a session once its teardown finished. */
  sessionClosed(session: Session): void {
    if (this.#sessions.delete(session)) {
      this.observer.connectionClosed?.();
      if (debugEnabled()) log.debug("connection closed", { session: session.id });
    }
  }

  /**
   * Who is subscribed to `subscription` on every node sharing the broker (extension E3; the admin API's presence):
   * undefined when its service has no presence (or it names no service). Rejects when the broker cannot answer.
   */
  async presence(subscription: string): Promise<PresenceData | undefined> {
    const dot = subscription.indexOf(".");
    const serviceName = dot > 0 && dot < subscription.length - 1 ? subscription.slice(0, dot) : "";
    const service = Object.hasOwn(this.config.services, serviceName) ? this.config.services[serviceName] : undefined;
    if (!service?.presence) return undefined;
    const found = await this.presenceTracker.read(subscription, service.presence, "api");
    return { count: found.count, users: found.users.map((user) => ({ ...user.fields })) };
  }

  /**
   * Graceful shutdown: refuse new sessions, close every session with 1000 (as SocketShark), let their unsubscribe
   * callbacks run for at most `shutdown.drainTimeout` seconds, then cancel what is left and close the broker.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const sessions = this.#sessions.size;
    const abandonedBefore = this.services.abandoned;
    log.info("shutting down", { sessions });
    this.observer.ready?.(false);
    // Other nodes forget this one at once rather than after three report intervals.
    await this.#control?.close();
    const drained = Promise.all([...this.#sessions].map((s) => s.close(Closes.normal)));
    const outcome = await raceTimeout(
      drained.then(() => "drained" as const),
      this.config.shutdown.drainTimeout * 1000,
      () => "timeout" as const,
      this.clock,
    );
    if (outcome === "timeout") {
      log.warn("drain timeout; cancelling remaining callbacks", { sessions: this.#sessions.size });
      this.#shutdown.abort();
      // Cancelled calls settle at once; give them a moment so the count below includes them.
      await raceTimeout(drained, SETTLE_MS, () => undefined, this.clock);
    }
    // The sessions' presence entries are removed (their leaves said) while the broker still runs.
    await raceTimeout(this.presenceTracker.close(), SETTLE_MS, () => undefined, this.clock);
    await this.broker.close();
    // Said plainly: unsubscribe callbacks that never got an answer (failed, refused, or cut by the drain timeout).
    const undelivered = this.services.abandoned - abandonedBefore;
    const summary = { sessions, sessions_left: this.#sessions.size, callbacks_not_delivered: undelivered };
    if (undelivered > 0 || outcome === "timeout") log.warn("done, with callbacks not delivered", summary);
    else log.info("done", summary);
  }

  #brokerStatus(status: BrokerStatus): void {
    if (this.#brokerReady && !status.ready) this.observer.brokerLost?.();
    this.#brokerReady = status.ready;
    this.observer.ready?.(this.ready);
    if (status.ready) log.info("broker ready");
    else log.warn("broker not ready", { reason: status.reason });
    if (status.fatal) {
      log.error("broker connection lost; shutting down (onConnectionLoss: shutdown)", { reason: status.reason });
      this.#onFatal?.(status.reason ?? "broker lost");
    }
  }
}
