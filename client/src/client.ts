import { backoffDelay } from "./backoff.ts";
import { type Clock, systemClock, Timer } from "./clock.ts";
import { closePolicy } from "./close_policy.ts";
import { ShoalError, ShoalRequestError } from "./errors.ts";
import { KeepAlive } from "./keep_alive.ts";
import { type PendingRequest, RequestQueue } from "./requests.ts";
import { ClientSubscription, type Subscription, type SubscriptionHost } from "./subscription.ts";
import type {
  AuthCredentials,
  AuthProvider,
  ConnectionState,
  DisconnectInfo,
  ErrorListener,
  Frame,
  PingOptions,
  Reply,
  SendOptions,
  ShoalClientOptions,
  ShoalErrorEvent,
  StateListener,
  SubscribeOptions,
  UnsubscribedListener,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.ts";

/**
 * The event sent after `message` events that may go unanswered, so that a reply settles them (see `send`). Shoal
 * does not know it and answers `{"event":"shoal-client.sync","status":"error","error":"Event not found."}` in its
 * turn (docs/protocol.md §3.2), without calling any service.
 */
export const SYNC_EVENT = "shoal-client.sync";

/** The error a revocation carries when a history subscription's live stream skipped (docs/protocol.md §16.3). */
const INSUFFICIENT_STATE = "Insufficient state.";

/**
 * Errors of a refused subscribe that say "not now" rather than "no": no usable service answer or broker (§9.2,
 * §5.4 step 10) and the rate limit (§13.3). A re-subscribe refused with one is tried again after a backoff.
 */
const PASSING = new Set<unknown>(["Service unavailable.", "Rate limit exceeded."]);

/** The error of an `unsubscribe` for a name the session does not hold (§7.2). */
const NOT_SUBSCRIBED = "Subscription does not exist.";

const DEFAULTS = {
  minDelay: 0.5,
  maxDelay: 20,
  stableAfter: 10,
  keepAliveInterval: 25,
  keepAliveTimeout: 10,
  connectTimeout: 10,
} as const;

/** WebSocket `readyState` of an open socket. */
const OPEN = 1;

/** A `send` not yet written to a socket, or waiting for its reply. */
interface Outgoing {
  readonly name: string;
  readonly text: string;
  readonly expectReply: boolean;
  settled: boolean;
  resolve(reply: Reply | undefined): void;
  reject(error: unknown): void;
}

/** A `ping` waiting for its pong. */
interface PingWaiter {
  readonly id: string;
  sentAt: number | undefined;
  resolve(ms: number): void;
  reject(error: unknown): void;
}

/** Options after defaults, in milliseconds. */
interface Settings {
  readonly minMs: number;
  readonly maxMs: number;
  readonly stableMs: number;
  readonly keepAlive: { readonly intervalMs: number; readonly timeoutMs: number } | undefined;
  readonly connectTimeoutMs: number;
}

/**
 * A Shoal client: one WebSocket at a time, reconnected with backoff for as long as the client is not closed;
 * after each reconnect it authenticates again (a fresh ticket from `auth`) and re-subscribes every subscription,
 * with `recover` from its last position on history services, so that `onMessage` sees each message once and in
 * order.
 *
 * ```ts
 * const client = new ShoalClient("wss://shoal.example.com/", { auth: async () => ({ ticket: await getTicket() }) });
 * const sub = client.subscribe<Book>("books.1", { onMessage: (m) => render(m.data) });
 * await sub.ready;
 * ```
 */
export class ShoalClient {
  /** The URL the client connects to. */
  readonly url: string;
  readonly #auth: AuthProvider | undefined;
  readonly #WebSocket: WebSocketConstructor;
  readonly #clock: Clock;
  readonly #settings: Settings;
  readonly #reconnectTimer: Timer;
  readonly #connectTimer: Timer;
  readonly #stableTimer: Timer;
  readonly #keepAlive: KeepAlive | undefined;
  readonly #stateListeners = new Set<StateListener>();
  readonly #errorListeners = new Set<ErrorListener>();
  readonly #unsubscribedListeners = new Set<UnsubscribedListener>();
  /** Subscriptions subscribing or active, by name, in subscribe order (re-subscribed in that order). */
  readonly #subscriptions = new Map<string, ClientSubscription<unknown>>();
  /** Subscriptions whose unsubscribe is on its way: their messages still arrive until its OK. */
  readonly #leaving = new Map<string, ClientSubscription<unknown>>();
  /** Sends waiting for a connection. */
  #outbox: Outgoing[] = [];
  readonly #pings = new Map<string, PingWaiter>();
  #requests = new RequestQueue();
  #state: ConnectionState = "connecting";
  #socket: WebSocketLike | undefined;
  /** The socket is open (pings may go). */
  #open = false;
  /** Authenticated (or not needed) and re-subscribed: requests go out at once. */
  #writable = false;
  /** Aborts the auth provider of the current attempt. */
  #attempt: AbortController | undefined;
  /** Reconnect attempts since the last stable connection. */
  #failures = 0;
  /** The pending reconnect may be cut short by `online`/`visibilitychange` (an ordinary backoff). */
  #wakeable = false;
  #syncQueued = false;
  #pingCount = 0;
  readonly #host: SubscriptionHost;
  readonly #removeWakeListeners: () => void;
  readonly #removeAbortListener: () => void;

  /**
   * Start connecting to `url` (`ws:`/`wss:`, or `http:`/`https:` for the same). `options.reconnect` delays are
   * in seconds.
   */
  constructor(url: string | URL, options: ShoalClientOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    else if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`ShoalClient: the URL must be ws:, wss:, http: or https:, not ${parsed.protocol}`);
    }
    this.url = parsed.href;
    this.#auth = options.auth;
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) throw new TypeError("ShoalClient: no global WebSocket; pass options.WebSocket");
    this.#WebSocket = WebSocketImpl;
    this.#clock = options.clock ?? systemClock;
    this.#settings = settings(options);
    this.#reconnectTimer = new Timer(this.#clock);
    this.#connectTimer = new Timer(this.#clock);
    this.#stableTimer = new Timer(this.#clock);
    const keepAlive = this.#settings.keepAlive;
    this.#keepAlive = keepAlive && new KeepAlive(this.#clock, {
      ...keepAlive,
      ping: () => this.#write(JSON.stringify({ event: "ping", data: "keep-alive" })),
      dead: () => this.#lost({ code: 1006, reason: "keep-alive timeout" }),
    });
    this.#host = {
      unsubscribe: (subscription) => this.#unsubscribe(subscription),
      send: (name, data, sendOptions) => this.send(name, data, sendOptions),
      callbackFailed: (callback, subscription, error) =>
        this.#report({ kind: "callback", message: `${callback} of ${subscription} threw`, error, subscription }),
    };
    this.#removeWakeListeners = this.#listenForWake();
    const signal = options.signal;
    const onAbort = () => this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#removeAbortListener = () => signal?.removeEventListener("abort", onAbort);
    if (signal?.aborted) this.close();
    else this.#connect();
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Subscribe to `name` (`"<service>.<topic>"`). The subscribe is sent now if connected, else on connect; it is
   * sent again after every reconnect until `unsubscribe()`. One subscription per name: subscribing a name this
   * client holds throws (unsubscribe it first).
   */
  subscribe<T = unknown>(name: string, options: SubscribeOptions<T>): Subscription<T> {
    if (this.#state === "closed") throw new ShoalRequestError("closed", "ShoalClient: subscribe after close()");
    if (this.#subscriptions.has(name)) throw new Error(`ShoalClient: already subscribed to ${JSON.stringify(name)}`);
    const subscription = new ClientSubscription<T>(name, options, this.#host);
    if (options.signal?.aborted) {
      subscription.end({ failure: options.signal.reason });
      return subscription;
    }
    this.#subscriptions.set(name, subscription);
    if (this.#writable) this.#sendSubscribe(subscription);
    return subscription;
  }

  /**
   * Send `data` to the service of subscription `name` (the `message` event, docs/protocol.md §6), which this
   * client must hold. Waits for a connection if there is none. Resolves with the reply, or with `undefined` once
   * Shoal has processed the message without replying (no `on_message`, or one that answered without `data`).
   * Rejects with `ShoalError` on an error reply, with `ShoalRequestError` (`disconnected`) when the connection
   * dropped before the answer (the message may or may not have been processed: it is not sent again), or
   * (`closed`) on `close()`.
   *
   * Shoal answers events in order but sends nothing for a silent `message`, and its `ping` is answered out of
   * turn (decision 12), so a pong proves nothing. What proves the message was processed is the reply to a later
   * event: when no other request follows it, the client sends one `{"event":"shoal-client.sync"}` after a burst
   * of sends (answered `Event not found.` in its turn, no service called). `expectReply: true` skips it when the
   * service always answers.
   */
  send<R = unknown>(name: string, data: unknown, options: SendOptions = {}): Promise<Reply<R> | undefined> {
    if (this.#state === "closed") return Promise.reject(new ShoalRequestError("closed", "ShoalClient: send after close()"));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let text: string;
    try {
      text = JSON.stringify({ event: "message", subscription: name, data });
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Reply<R> | undefined>((resolve, reject) => {
      const onAbort = () => {
        if (outgoing.settled) return;
        this.#outbox = this.#outbox.filter((o) => o !== outgoing);
        outgoing.reject(signal!.reason);
      };
      const outgoing: Outgoing = {
        name,
        text,
        expectReply: options.expectReply === true,
        settled: false,
        resolve: (reply) => {
          if (outgoing.settled) return;
          outgoing.settled = true;
          signal?.removeEventListener("abort", onAbort);
          resolve(reply as Reply<R> | undefined);
        },
        reject: (error) => {
          if (outgoing.settled) return;
          outgoing.settled = true;
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.#writable) this.#sendMessage(outgoing);
      else this.#outbox.push(outgoing);
    });
  }

  /**
   * Round-trip time to Shoal in milliseconds, by the protocol's `ping` event (answered at once, ahead of events
   * still waiting on a service). Waits for an open connection; rejects with `ShoalRequestError` if the connection
   * drops before the pong or the client is closed.
   */
  ping(options: PingOptions = {}): Promise<number> {
    if (this.#state === "closed") return Promise.reject(new ShoalRequestError("closed", "ShoalClient: ping after close()"));
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<number>((resolve, reject) => {
      const id = `p${++this.#pingCount}`;
      const done = () => {
        this.#pings.delete(id);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(signal!.reason);
      };
      const waiter: PingWaiter = {
        id,
        sentAt: undefined,
        resolve: (ms) => (done(), resolve(ms)),
        reject: (error) => (done(), reject(error)),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pings.set(id, waiter);
      if (this.#open) this.#sendPing(waiter);
    });
  }

  /** Call `listener` on every state change; returns a function that removes it. */
  onStateChange(listener: StateListener): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Call `listener` for every error the client handles by itself (see `ShoalErrorEvent`); returns its remover. */
  onError(listener: ErrorListener): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /**
   * Call `listener` whenever a subscription ends without the application asking: Shoal revoked it, or its
   * re-subscribe failed. Each subscription's own `onUnsubscribed` is called too. Returns its remover.
   */
  onUnsubscribed(listener: UnsubscribedListener): () => void {
    this.#unsubscribedListeners.add(listener);
    return () => this.#unsubscribedListeners.delete(listener);
  }

  /**
   * Connect now: after close code 4000 (the client waits for this), or to skip a backoff wait. Does nothing while
   * a connection is open or opening. Throws after `close()`.
   */
  connect(): void {
    if (this.#state === "closed") throw new ShoalRequestError("closed", "ShoalClient: connect after close()");
    if (this.#socket) return;
    this.#connect();
  }

  /**
   * Close the connection and stop for good: no reconnect, no timer, no listener left. Waiting `ready`s, sends
   * and pings reject with `ShoalRequestError` (`closed`); waiting unsubscribes resolve. Idempotent.
   */
  close(): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#removeWakeListeners();
    this.#removeAbortListener();
    this.#reconnectTimer.clear();
    this.#dropSocket(1000, "client closed");
    const closed = () => new ShoalRequestError("closed", "ShoalClient closed");
    for (const outgoing of this.#outbox) outgoing.reject(closed());
    this.#outbox = [];
    for (const waiter of [...this.#pings.values()]) waiter.reject(closed());
    for (const subscription of [...this.#subscriptions.values(), ...this.#leaving.values()]) {
      subscription.end({ failure: closed() });
    }
    this.#subscriptions.clear();
    this.#leaving.clear();
    this.#emitState("closed");
  }

  // --- connection -------------------------------------------------------------------------------------------

  #connect(): void {
    this.#reconnectTimer.clear();
    this.#wakeable = false;
    this.#setState("connecting");
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(this.url);
    } catch (error) {
      this.#report({ kind: "protocol", message: "the WebSocket could not be created", error });
      return this.#afterLoss({ code: 1006, reason: String(error) });
    }
    this.#socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      if (socket !== this.#socket) return;
      this.#opened(socket).catch((error) => {
        this.#report({ kind: "protocol", message: "setting up the connection failed", error });
        if (socket === this.#socket) this.#lost({ code: 1006, reason: "setup failed" });
      });
    };
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      this.#keepAlive?.frame();
      this.#frame(event.data);
    };
    socket.onclose = (event) => {
      if (socket === this.#socket) this.#lost({ code: event.code, reason: event.reason });
    };
    socket.onerror = () => {}; // a close event follows
    this.#connectTimer.set(this.#settings.connectTimeoutMs, () => this.#lost({ code: 1006, reason: "connect timeout" }));
  }

  /** The socket opened: authenticate, re-subscribe, flush what waited, in that order (Shoal keeps it). */
  async #opened(socket: WebSocketLike): Promise<void> {
    this.#connectTimer.clear();
    // With auth, the connection is not up until auth is answered: the same time limit covers the provider and the
    // reply, so a server (or provider) that never answers cannot keep the client "connecting" for ever.
    if (this.#auth) {
      this.#connectTimer.set(this.#settings.connectTimeoutMs, () => this.#lost({ code: 1006, reason: "auth timeout" }));
    }
    this.#open = true;
    this.#keepAlive?.start();
    for (const waiter of this.#pings.values()) if (waiter.sentAt === undefined) this.#sendPing(waiter);
    const attempt = new AbortController();
    this.#attempt = attempt;
    let credentials: AuthCredentials | null = null;
    if (this.#auth) {
      try {
        credentials = await this.#auth(attempt.signal);
      } catch (error) {
        if (socket !== this.#socket) return;
        this.#connectTimer.clear();
        this.#report({ kind: "auth", message: "the auth provider failed", error });
        return this.#lost({ code: 1006, reason: "auth provider failed" });
      }
      if (socket !== this.#socket) return;
    }
    if (credentials) {
      const frame = authFrame(credentials);
      const done = (reply?: Frame) => {
        if (reply?.status !== "ok") {
          this.#report({
            kind: "auth",
            message: reply ? `auth refused: ${describe(reply.error)}` : "auth got no reply",
            error: reply?.error,
            data: reply?.data,
          });
        }
        if (socket === this.#socket) this.#connected();
      };
      this.#request(JSON.stringify(frame), { event: "auth", name: "", wantsSync: false, reply: done, noReply: done, lost: () => {} });
    }
    for (const subscription of this.#subscriptions.values()) if (!subscription.sent) this.#sendSubscribe(subscription);
    this.#writable = true;
    const outbox = this.#outbox;
    this.#outbox = [];
    for (const outgoing of outbox) this.#sendMessage(outgoing);
    if (!credentials) this.#connected();
  }

  #connected(): void {
    this.#connectTimer.clear();
    if (this.#state !== "connecting") return;
    this.#stableTimer.set(this.#settings.stableMs, () => (this.#failures = 0));
    this.#setState("connected");
  }

  /** The connection is gone (closed, timed out, or given up on): fail what waited on it and plan the next. */
  #lost(close: { code: number; reason: string }): void {
    this.#dropSocket(1000, close.reason);
    this.#afterLoss(close);
  }

  /** Detach and close the socket, stop its timers, fail its requests; subscriptions wait for the next one. */
  #dropSocket(code: number, reason: string): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#open = false;
    this.#writable = false;
    this.#connectTimer.clear();
    this.#stableTimer.clear();
    this.#keepAlive?.stop();
    this.#attempt?.abort();
    this.#attempt = undefined;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        if (socket.readyState <= OPEN) socket.close(code, reason.slice(0, 100));
      } catch {
        // closing a socket that is going anyway
      }
    }
    const requests = this.#requests;
    this.#requests = new RequestQueue();
    requests.lose();
    for (const subscription of this.#subscriptions.values()) {
      subscription.sent = subscription.confirmed = false;
      subscription.state = "subscribing"; // until its re-subscribe is answered
      subscription.retry?.clear(); // the next connect re-subscribes it
    }
    const failure = this.#failure();
    for (const waiter of [...this.#pings.values()]) {
      if (waiter.sentAt !== undefined) waiter.reject(failure);
    }
  }

  #afterLoss(close: { code: number; reason: string }): void {
    if (this.#state === "closed") return;
    const policy = closePolicy(close.code);
    const { minMs, maxMs } = this.#settings;
    let retryIn: number | undefined;
    switch (policy.action) {
      case "backoff":
        retryIn = backoffDelay(this.#failures++, minMs, maxMs, () => this.#clock.random());
        break;
      case "spread":
        retryIn = backoffDelay(Infinity, minMs, maxMs, () => this.#clock.random());
        this.#failures++;
        break;
      case "max":
        retryIn = maxMs;
        this.#failures++;
        break;
      case "stay":
        break;
    }
    if (policy.action !== "backoff") {
      this.#report({ kind: "close", message: `closed with ${close.code}: ${policy.description}`, code: close.code });
    }
    if (retryIn !== undefined) {
      this.#wakeable = policy.action === "backoff";
      this.#reconnectTimer.set(retryIn, () => this.#connect());
    }
    this.#setState("disconnected", { code: close.code, reason: close.reason, description: policy.description, retryIn });
  }

  /** `online`, `offline` and the page becoming visible: check a connection, or stop waiting to reconnect. */
  #listenForWake(): () => void {
    const target = globalThis as unknown as Partial<EventTarget>;
    const document = (globalThis as { document?: EventTarget & { visibilityState?: string } }).document;
    const wake = () => {
      if (this.#state === "closed") return;
      if (this.#socket) return this.#keepAlive?.probe();
      if (this.#reconnectTimer.pending && this.#wakeable) this.#connect();
    };
    const offline = () => this.#keepAlive?.probe();
    const visibility = () => {
      if (document?.visibilityState === "visible") wake();
    };
    target.addEventListener?.("online", wake);
    target.addEventListener?.("offline", offline);
    document?.addEventListener?.("visibilitychange", visibility);
    return () => {
      target.removeEventListener?.("online", wake);
      target.removeEventListener?.("offline", offline);
      document?.removeEventListener?.("visibilitychange", visibility);
    };
  }

  // --- frames -----------------------------------------------------------------------------------------------

  #frame(data: unknown): void {
    let frame: unknown;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer));
    } catch (error) {
      return this.#report({ kind: "protocol", message: "a frame that is not JSON", error });
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      return this.#report({ kind: "protocol", message: "a frame that is not a JSON object", error: frame });
    }
    const f = frame as Frame;
    if (f.event === "pong") return this.#pong(f);
    if ("status" in f) {
      if (!this.#requests.settle(f)) this.#report({ kind: "protocol", message: "a reply to no request", error: f });
      return;
    }
    if (f.event === "message") return this.#route(f.subscription)?.deliver(f);
    if (f.event === "unsubscribe") return this.#revoked(f);
    // Other server events (presence `join`/`leave`, extension E3) are not handled by this version.
  }

  /** The subscription a message or revocation of `name` is for: the confirmed one, else the one leaving. */
  #route(name: unknown): ClientSubscription<unknown> | undefined {
    if (typeof name !== "string") return undefined;
    const current = this.#subscriptions.get(name);
    return current?.confirmed ? current : this.#leaving.get(name);
  }

  #pong(frame: Frame): void {
    const waiter = typeof frame.data === "string" ? this.#pings.get(frame.data) : undefined;
    if (waiter?.sentAt !== undefined) waiter.resolve(this.#clock.now() - waiter.sentAt);
  }

  /** A server-initiated unsubscribe (docs/protocol.md §11.2). */
  #revoked(frame: Frame): void {
    const subscription = this.#route(frame.subscription);
    if (!subscription) return;
    if (subscription.state === "unsubscribing") {
      subscription.revoked = true; // the application is leaving anyway; its unsubscribe will resolve
      return;
    }
    if (frame.error === INSUFFICIENT_STATE) {
      // The live stream skipped an offset: subscribe again at once, recovering from the last position (§16.3).
      subscription.sent = subscription.confirmed = false;
      subscription.state = "subscribing";
      if (this.#writable) this.#sendSubscribe(subscription);
      return;
    }
    this.#subscriptions.delete(subscription.name);
    subscription.end();
    this.#ended(subscription, frame.error, frame.data, "unsubscribed");
  }

  /** Tell the application a subscription ended without its asking. */
  #ended(subscription: ClientSubscription<unknown>, error: unknown, data: unknown, kind: "unsubscribed" | "subscribe"): void {
    const { name } = subscription;
    const message = kind === "unsubscribed"
      ? `Shoal ended ${name}: ${describe(error)}`
      : `re-subscribing ${name} failed: ${describe(error)}`;
    this.#report({ kind, message, error, data, subscription: name });
    try {
      subscription.options.onUnsubscribed?.(error, data);
    } catch (thrown) {
      this.#host.callbackFailed("onUnsubscribed", name, thrown);
    }
    for (const listener of [...this.#unsubscribedListeners]) {
      try {
        listener(name, error, data);
      } catch (thrown) {
        this.#host.callbackFailed("an onUnsubscribed listener", name, thrown);
      }
    }
  }

  // --- requests ---------------------------------------------------------------------------------------------

  #sendSubscribe(subscription: ClientSubscription<unknown>): void {
    subscription.sent = true;
    subscription.confirmed = false;
    this.#request(JSON.stringify(subscription.frame()), {
      event: "subscribe",
      name: subscription.name,
      wantsSync: false,
      reply: (reply) => this.#subscribeAnswered(subscription, reply),
      noReply: () => this.#subscribeUnanswered(subscription),
      lost: () => {},
    });
  }

  #subscribeAnswered(subscription: ClientSubscription<unknown>, reply: Frame): void {
    if (subscription.state === "unsubscribed") return;
    if (reply.status === "ok") return subscription.subscribed(reply as Reply);
    if (subscription.state === "unsubscribing") {
      // Its unsubscribe follows and will be told the name is not held.
      subscription.revoked = true;
      return subscription.end({ failure: new ShoalError(reply) });
    }
    const resubscribe = subscription.readySettled;
    if (resubscribe && PASSING.has(reply.error)) return this.#retrySubscribe(subscription, reply);
    this.#subscriptions.delete(subscription.name);
    subscription.end({ failure: new ShoalError(reply) });
    if (resubscribe) this.#ended(subscription, reply.error, reply.data, "subscribe");
  }

  /**
   * A re-subscribe was refused for a passing reason (a service or Redis briefly unreachable, say right after an
   * outage): the subscription stays, and is tried again after a backoff (or at the next connect).
   */
  #retrySubscribe(subscription: ClientSubscription<unknown>, reply: Frame): void {
    subscription.sent = false;
    const delay = backoffDelay(subscription.retries++, this.#settings.minMs, this.#settings.maxMs, () => this.#clock.random());
    const { name } = subscription;
    this.#report({
      kind: "subscribe",
      message: `re-subscribing ${name} failed: ${describe(reply.error)}; trying again in ${delay} ms`,
      error: reply.error,
      data: reply.data,
      subscription: name,
    });
    subscription.retry ??= new Timer(this.#clock);
    subscription.retry.set(delay, () => {
      if (subscription.state === "subscribing" && !subscription.sent && this.#writable) this.#sendSubscribe(subscription);
    });
  }

  /**
   * Shoal processed the subscribe without an OK (a `before_subscribe` answer one of the service's filter fields
   * rejects, docs/protocol.md §5.4 step 12): the server holds a subscription the client was never told about.
   * Take it back, and fail it.
   */
  #subscribeUnanswered(subscription: ClientSubscription<unknown>): void {
    if (subscription.state !== "subscribing") return;
    const failure = new ShoalRequestError("no-reply", `Shoal sent no subscribe OK for ${subscription.name}`);
    const resubscribe = subscription.readySettled;
    this.#subscriptions.delete(subscription.name);
    subscription.end({ failure });
    if (this.#writable) {
      this.#request(JSON.stringify({ event: "unsubscribe", subscription: subscription.name }), {
        event: "unsubscribe",
        name: subscription.name,
        wantsSync: false,
        reply: () => {},
        noReply: () => {},
        lost: () => {},
      });
    }
    if (resubscribe) this.#ended(subscription, failure, undefined, "subscribe");
  }

  #unsubscribe(subscription: ClientSubscription<unknown>): Promise<Reply | undefined> {
    if (subscription.state === "unsubscribed") return Promise.resolve(undefined);
    if (subscription.state === "unsubscribing") return subscription.leaving!;
    const { name } = subscription;
    if (this.#subscriptions.get(name) === subscription) this.#subscriptions.delete(name);
    if (!subscription.sent || !this.#writable) {
      // Not held on the server (not connected, or its subscribe not sent yet): nothing to tell it.
      subscription.end();
      return Promise.resolve(undefined);
    }
    this.#leaving.set(name, subscription);
    const leaving = subscription.leave();
    const forget = () => {
      if (this.#leaving.get(name) === subscription) this.#leaving.delete(name);
    };
    this.#request(JSON.stringify({ event: "unsubscribe", subscription: name }), {
      event: "unsubscribe",
      name,
      wantsSync: false,
      reply: (reply) => {
        forget();
        if (reply.status === "ok") return subscription.end({ reply: reply as Reply });
        if (subscription.revoked || reply.error === NOT_SUBSCRIBED) return subscription.end();
        // `before_unsubscribe` said no: the subscription stays, on the server and here (§7.2 step 3).
        if (this.#subscriptions.has(name)) return subscription.end({ failure: new ShoalError(reply) });
        this.#subscriptions.set(name, subscription);
        subscription.stay(new ShoalError(reply));
      },
      noReply: () => (forget(), subscription.end()),
      lost: () => (forget(), subscription.end()),
    });
    return leaving;
  }

  #sendMessage(outgoing: Outgoing): void {
    if (outgoing.settled) return; // aborted while waiting
    // Two messages of one name with no answered event between: a single reply could belong to either.
    if (this.#requests.ambiguous("message", outgoing.name)) this.#sendSync();
    this.#request(outgoing.text, {
      event: "message",
      name: outgoing.name,
      wantsSync: !outgoing.expectReply,
      reply: (reply) => reply.status === "ok" ? outgoing.resolve(reply as Reply) : outgoing.reject(new ShoalError(reply)),
      noReply: () => outgoing.resolve(undefined),
      lost: () => outgoing.reject(this.#failure()),
    });
    this.#queueSync();
  }

  /** After this turn of the event loop, a sync event if the newest request is a message that may go unanswered. */
  #queueSync(): void {
    if (this.#syncQueued) return;
    this.#syncQueued = true;
    queueMicrotask(() => {
      this.#syncQueued = false;
      if (this.#writable && this.#requests.needsSync) this.#sendSync();
    });
  }

  #sendSync(): void {
    const ignore = () => {};
    this.#request(JSON.stringify({ event: SYNC_EVENT }), {
      event: SYNC_EVENT,
      name: "",
      wantsSync: false,
      reply: ignore,
      noReply: ignore,
      lost: ignore,
    });
  }

  #sendPing(waiter: PingWaiter): void {
    waiter.sentAt = this.#clock.now();
    this.#write(JSON.stringify({ event: "ping", data: waiter.id }));
  }

  /** Send an in-order request; its reply (or its absence) settles `pending`. */
  #request(text: string, pending: PendingRequest): void {
    this.#requests.push(pending);
    this.#write(text);
  }

  #write(text: string): void {
    try {
      this.#socket?.send(text);
    } catch (error) {
      // A socket that is closing: its close event fails the request.
      this.#report({ kind: "protocol", message: "a frame could not be sent", error });
    }
  }

  // --- state and reporting ----------------------------------------------------------------------------------

  #failure(): ShoalRequestError {
    return this.#state === "closed"
      ? new ShoalRequestError("closed", "ShoalClient closed")
      : new ShoalRequestError("disconnected", "the connection dropped before the reply");
  }

  #setState(state: ConnectionState, info?: DisconnectInfo): void {
    if (this.#state === state && state !== "disconnected") return;
    if (this.#state === "closed") return;
    this.#state = state;
    this.#emitState(state, info);
  }

  #emitState(state: ConnectionState, info?: DisconnectInfo): void {
    for (const listener of [...this.#stateListeners]) {
      try {
        listener(state, info);
      } catch (error) {
        this.#report({ kind: "callback", message: "an onStateChange listener threw", error });
      }
    }
  }

  #report(event: ShoalErrorEvent): void {
    if (this.#errorListeners.size === 0) {
      if (event.kind === "callback" || event.kind === "protocol") console.error(`ShoalClient: ${event.message}`, event.error);
      return;
    }
    for (const listener of [...this.#errorListeners]) {
      try {
        listener(event);
      } catch (error) {
        console.error("ShoalClient: an onError listener threw", error);
      }
    }
  }
}

function settings(options: ShoalClientOptions): Settings {
  const seconds = (value: number | undefined, fallback: number, what: string, zero = false): number => {
    const v = value ?? fallback;
    if (!Number.isFinite(v) || v < 0 || (!zero && v === 0)) throw new RangeError(`ShoalClient: ${what} must be a positive number of seconds`);
    return v * 1000;
  };
  const minMs = seconds(options.reconnect?.minDelay, DEFAULTS.minDelay, "reconnect.minDelay", true);
  const maxMs = seconds(options.reconnect?.maxDelay, DEFAULTS.maxDelay, "reconnect.maxDelay", true);
  if (maxMs < minMs) throw new RangeError("ShoalClient: reconnect.maxDelay must not be below reconnect.minDelay");
  const keepAlive = options.keepAlive === false ? undefined : {
    intervalMs: seconds(options.keepAlive?.interval, DEFAULTS.keepAliveInterval, "keepAlive.interval"),
    timeoutMs: seconds(options.keepAlive?.timeout, DEFAULTS.keepAliveTimeout, "keepAlive.timeout"),
  };
  return {
    minMs,
    maxMs,
    stableMs: seconds(options.reconnect?.stableAfter, DEFAULTS.stableAfter, "reconnect.stableAfter", true),
    keepAlive,
    connectTimeoutMs: seconds(options.connectTimeout, DEFAULTS.connectTimeout, "connectTimeout"),
  };
}

/** The `auth` frame for `credentials`: a ticket (method left to its default) or a JWT. */
function authFrame(credentials: AuthCredentials): Frame {
  const { method, ticket, token } = credentials;
  if (method === "jwt" || (method === undefined && token !== undefined && ticket === undefined)) {
    return { event: "auth", method: "jwt", token };
  }
  return method === undefined ? { event: "auth", ticket } : { event: "auth", method, ticket };
}

function describe(error: unknown): string {
  return typeof error === "string" ? error : JSON.stringify(error) ?? String(error);
}
