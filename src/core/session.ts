import { getLogger, withContext } from "@logtape/logtape";
import { debugEnabled, REDACTED } from "../log.ts";
import { type Close, Closes } from "../protocol/close_codes.ts";
import { type ClientEvent, type EventName, parseClientEvent } from "../protocol/client_event.ts";
import { Errors, EventError, JwtErrors, LimitErrors } from "../protocol/errors.ts";
import { errorFrame, type Frame, INVALID_EVENT_FRAME, pongFrame, revokedFrame } from "../protocol/frames.ts";
import { parsedWeight } from "../protocol/json.ts";
import type { CoreContext } from "./context.ts";
import { NO_FIELDS } from "./fields.ts";
import type { Subscription, SubscriptionOwner } from "./subscription.ts";
import type { Transport } from "./transport.ts";
import { TokenBucket } from "./token_bucket.ts";

const log = getLogger(["shoal", "session"]);


/** Queued work; `bytes` counts against `limits.maxPendingBytes` until the task starts. */
type Task =
  | { readonly kind: "event"; readonly event: ClientEvent; readonly bytes: number }
  | { readonly kind: "reply"; readonly text: string; readonly bytes: number }
  | { readonly kind: "internal"; run(): Promise<void> };

const INVALID_EVENT_TEXT = JSON.stringify(INVALID_EVENT_FRAME);

/** The longest delay a timer holds (2^31 - 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One WebSocket connection. Events run one at a time in arrival order (SocketShark's contract), except `ping`,
 * which is answered at once (decision 12). At most `ws.maxPendingEvents` may wait; more closes the connection.
 */
/** A client event's handler (`events.ts`): throws `EventError` for a contract error reply. */
export type EventHandler = (context: CoreContext, session: Session, fields: Readonly<Record<string, unknown>>) => Promise<void>;

/** What a session runs, passed in by its creator (the router passes `events.ts`'s). */
export interface SessionHandlers {
  readonly events: Readonly<Record<Exclude<EventName, "ping">, EventHandler>>;
  /** Take a subscription out of the session and the hub and stop its timers; idempotent. */
  remove(context: CoreContext, session: Session, subscription: Subscription): void;
  /** `before_unsubscribe` (verdict ignored) then `on_unsubscribe`; resolves with the former's `data`. */
  unsubscribeCallbacks(context: CoreContext, subscription: Subscription): Promise<unknown>;
}

export interface SessionOptions {
  readonly id: string;
  readonly handlers: SessionHandlers;
  /** Called once the teardown finished. */
  readonly onClosed: (session: Session) => void;
}

export class Session implements SubscriptionOwner {
  readonly id: string;
  /** Active and pending subscriptions by name. */
  readonly subscriptions = new Map<string, Subscription>();
  /** What ticket validation returned (only the configured auth fields); empty means anonymous. */
  authInfo: Readonly<Record<string, unknown>> = NO_FIELDS;
  readonly #router: CoreContext;
  readonly #transport: Transport;
  readonly #handlers: SessionHandlers;
  readonly #onClosed: (session: Session) => void;
  readonly #queue: Task[] = [];
  /** Size of the frames of the queued events (`limits.maxPendingBytes`). */
  #queuedBytes = 0;
  /** Events a second (`limits.eventsPerSecond`); absent when unlimited. */
  readonly #bucket: TokenBucket | undefined;
  /** Aborted when the connection goes: cancels the callbacks of its events (not its teardown's own). */
  readonly #gone = new AbortController();
  /** When a JWT identity lapses (extension E2): the timer that clears it. */
  #authExpiry: unknown;
  /** Counts identities stored by `auth`: an expiry applies only to the identity it was set for. */
  #authGeneration = 0;
  #running = false;
  #current: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(context: CoreContext, transport: Transport, options: SessionOptions) {
    this.#router = context;
    this.#transport = transport;
    this.id = options.id;
    this.#handlers = options.handlers;
    this.#onClosed = options.onClosed;
    const { eventsPerSecond, eventsBurst } = context.config.limits;
    if (eventsPerSecond > 0) {
      this.#bucket = new TokenBucket(context.clock, { rate: eventsPerSecond, burst: eventsBurst || Math.ceil(eventsPerSecond) });
    }
  }

  /** Aborted once the connection is gone: callbacks made for its events pass it on. */
  get signal(): AbortSignal {
    return this.#gone.signal;
  }

  /** False once the session started closing: later events are ignored. */
  get open(): boolean {
    return this.#closing === undefined;
  }

  /** One frame from the client. Never throws. */
  receive(frame: string | ArrayBuffer | Uint8Array): void {
    if (this.#closing) return;
    const event = parseClientEvent(frame);
    const observer = this.#router.observer;
    if (event.kind === "ping") {
      observer.event?.("ping", true);
      this.send(pongFrame(event.fields.data));
      return;
    }
    // A refused event keeps only its small reply, never the frame; an accepted one counts its parsed size.
    const refusal = this.#bucket !== undefined && !this.#bucket.take() ? this.#refusal(event) : undefined;
    const { maxPendingEvents } = this.#router.config.ws;
    const bytes = refusal !== undefined ? refusal.length : parsedWeight(frame);
    if (this.#queue.length >= maxPendingEvents) {
      observer.refused?.("pending_events");
      log.warn("too many pending events; closing", { session: this.id });
      void this.close(Closes.tooManyPendingEvents);
      return;
    }
    // Only what waits counts: a frame that starts at once is not pending (nor is its weight a reason to close).
    if (this.#running && this.#queuedBytes + bytes > this.#router.config.limits.maxPendingBytes) {
      observer.refused?.("pending_bytes");
      log.warn("too many pending bytes; closing", { session: this.id, bytes: this.#queuedBytes + bytes });
      void this.close(Closes.tooManyPendingBytes);
      return;
    }
    this.#queuedBytes += bytes;
    if (refusal !== undefined) {
      // The refusal keeps its place among the replies; the event itself never runs.
      observer.refused?.("rate");
      this.#enqueue({ kind: "reply", text: refusal, bytes });
      return;
    }
    this.#enqueue({ kind: "event", event, bytes });
  }

  /**
   * The answer to an event refused by the rate limit, as text. It echoes the subscription only when that could be
   * a valid name (within `limits.maxSubscriptionLength`), so a flood of refused frames holds little memory.
   */
  #refusal(event: ClientEvent): string {
    if (event.kind === "undecodable" || event.kind === "invalid") return INVALID_EVENT_TEXT;
    const name = event.kind === "unknown" ? event.event : event.kind;
    const fields = event.kind === "unknown" ? undefined : event.fields;
    const requested = name !== "auth" ? fields?.subscription : undefined;
    const subscription = typeof requested === "string" && requested !== "" &&
        requested.length <= this.#router.config.limits.maxSubscriptionLength
      ? requested
      : undefined;
    return JSON.stringify(errorFrame(name, LimitErrors.rateLimited, { subscription }));
  }

  send(frame: Frame): void {
    this.sendText(JSON.stringify(frame));
  }

  sendText(text: string): void {
    if (this.#closing) return;
    this.#transport.send(text);
  }

  /** Join a native fan-out topic; false when the transport has none or the session is closing. */
  joinTopic(topic: string): boolean {
    if (this.#closing || !this.#transport.subscribe) return false;
    this.#transport.subscribe(topic);
    return true;
  }

  leaveTopic(topic: string): void {
    this.#transport.unsubscribe?.(topic);
  }

  /**
   * Remove a subscription whose authorization was revoked (decision 3), in turn with client events so the two
   * never interleave; if the client unsubscribed first this does nothing (decision 9).
   */
  revoke(subscription: Subscription, error: unknown): void {
    if (this.#closing) return;
    this.#enqueue({ kind: "internal", run: () => this.#revokeNow(subscription, error) });
  }

  /** A revocation's work, run in turn with the client's events (decision 9: one already gone is left alone). */
  async #revokeNow(subscription: Subscription, error: unknown): Promise<void> {
    if (this.subscriptions.get(subscription.name) !== subscription || !subscription.active) return;
    log.info("subscription revoked", { session: this.id, subscription: subscription.name, error });
    this.#handlers.remove(this.#router, this, subscription);
    const data = await this.#handlers.unsubscribeCallbacks(this.#router, subscription);
    this.send(revokedFrame(subscription.name, error, { extra: subscription.extra, data }));
  }

  /**
   * The identity just stored lapses at `at` (epoch ms; a JWT's `exp`), or never (undefined): a newer identity
   * replaces the timer. When it fires, every subscription of a service that requires authentication is revoked
   * with "Token expired." (decision 3) and the auth fields are cleared, in one task in turn with the client's
   * events, unless an identity accepted meanwhile (an `auth` queued before it) replaced this one.
   */
  expireAuthAt(at: number | undefined): void {
    const generation = ++this.#authGeneration;
    if (this.#authExpiry !== undefined) this.#router.clock.clearTimeout(this.#authExpiry);
    this.#authExpiry = undefined;
    if (at === undefined || this.#closing) return;
    this.#armExpiry(at, generation);
  }

  #armExpiry(at: number, generation: number): void {
    const wait = at - this.#router.clock.now();
    // Timers hold at most 2^31 - 1 ms (about 24.8 days); a later expiry waits in steps.
    this.#authExpiry = this.#router.clock.setTimeout(() => {
      this.#authExpiry = undefined;
      if (at > this.#router.clock.now()) return this.#armExpiry(at, generation);
      this.#enqueue({ kind: "internal", run: () => this.#authExpired(generation) });
    }, Math.min(Math.max(0, wait), MAX_TIMER_MS));
  }

  async #authExpired(generation: number): Promise<void> {
    if (generation !== this.#authGeneration) return; // a newer identity was accepted first: nothing lapsed
    log.info("token expired", { session: this.id });
    for (const subscription of [...this.subscriptions.values()]) {
      if (subscription.service.requireAuthentication) await this.#revokeNow(subscription, JwtErrors.tokenExpired);
    }
    // After the revocations, whose unsubscribe callbacks still name the user who was subscribed.
    this.authInfo = NO_FIELDS;
  }

  /** Close the connection from the server side and tear the session down. */
  close(close: Close = Closes.normal): Promise<void> {
    if (!this.#closing) this.#transport.close(close.code, close.reason);
    return this.disconnected();
  }

  /**
   * Tear the session down as a disconnect does (unsubscribe callbacks included), and only then close the connection
   * with `close`: an operator's disconnect (extension E4), so the service hears of it before the client can come back.
   * Does nothing more if the session was already closing.
   */
  async closeAfterCallbacks(close: Close): Promise<void> {
    if (this.#closing) return await this.#closing;
    await this.disconnected();
    this.#transport.close(close.code, close.reason);
  }

  /**
   * The connection is gone (or going): ignore further events, let the running one finish, then remove every
   * subscription newest first, calling `before_unsubscribe` and `on_unsubscribe` for each. Idempotent.
   */
  disconnected(): Promise<void> {
    if (!this.#closing) {
      this.#closing = this.#router.activity.track(withContext({ session: this.id }, () => this.#teardown()));
      this.#gone.abort();
    }
    return this.#closing;
  }

  async #teardown(): Promise<void> {
    this.#queue.length = 0;
    this.expireAuthAt(undefined);
    this.#queuedBytes = 0;
    // Out of the hub at once: a departed client receives and serializes nothing more, even while the event that
    // was running (its callbacks now aborted) winds down and the unsubscribe callbacks below take their time.
    for (const subscription of this.subscriptions.values()) {
      subscription.close();
      this.#router.hub.remove(subscription);
    }
    try {
      await this.#current;
      for (const subscription of [...this.subscriptions.values()].reverse()) {
        this.#handlers.remove(this.#router, this, subscription);
        try {
          await this.#handlers.unsubscribeCallbacks(this.#router, subscription);
        } catch (error) {
          log.error("unsubscribe callbacks failed", { session: this.id, subscription: subscription.name, error });
        }
      }
    } finally {
      // Whatever failed above, the session is released: no code path may leak it (decision 1).
      for (const subscription of this.subscriptions.values()) this.#handlers.remove(this.#router, this, subscription);
      this.#onClosed(this);
    }
  }

  #enqueue(task: Task): void {
    this.#queue.push(task);
    // #drain catches what its tasks throw; this catch is for a bug in #drain itself (an unhandled rejection
    // ends a Bun process).
    if (this.#running) return;
    this.#router.activity.track(this.#drain()).catch((error) => log.error("event queue failed", { session: this.id, error }));
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#closing) {
        const task = this.#queue.shift()!;
        if (task.kind !== "internal") this.#queuedBytes -= task.bytes;
        if (task.kind === "reply") {
          this.sendText(task.text);
          continue;
        }
        // Every line logged while the task runs (service calls, timers it starts) carries the session id.
        this.#current = withContext(
          { session: this.id },
          () => (task.kind === "event" ? this.#handle(task.event) : this.#runInternal(task)),
        );
        await this.#current;
      }
    } finally {
      this.#current = undefined;
      this.#running = false;
    }
  }

  async #runInternal(task: { run(): Promise<void> }): Promise<void> {
    try {
      await task.run();
    } catch (error) {
      log.error("internal task failed", { session: this.id, error });
    }
  }

  async #handle(event: ClientEvent): Promise<void> {
    const observer = this.#router.observer;
    switch (event.kind) {
      case "undecodable":
        this.sendText(INVALID_EVENT_TEXT);
        return;
      case "invalid":
        observer.event?.("invalid", false);
        this.sendText(INVALID_EVENT_TEXT);
        return;
      case "unknown":
        observer.event?.("unknown", false);
        this.send(errorFrame(event.event, Errors.eventNotFound));
        return;
      case "ping":
        return; // answered in receive()
    }
    const name = event.kind;
    const fields = event.fields;
    // Subscription events echo a usable `subscription` in every reply.
    const subscription = name !== "auth" && typeof fields.subscription === "string" && fields.subscription !== ""
      ? fields.subscription
      : undefined;
    if (debugEnabled()) log.debug("client event", { session: this.id, data: redacted(fields) });
    try {
      await this.#handlers.events[name](this.#router, this, fields);
      observer.event?.(name, true);
    } catch (error) {
      if (error instanceof EventError) {
        observer.event?.(name, false);
        try {
          this.send(errorFrame(name, error.error, { extra: error.extra, data: error.data, subscription }));
          return;
        } catch (sendError) {
          error = sendError; // the reply itself failed: answer as for any other bug
        }
      }
      log.error("unhandled event processing exception", { session: this.id, event: name, error });
      this.send(errorFrame(name, Errors.unhandledException, { subscription }));
      void this.close(Closes.normal);
    }
  }
}

/** An event's fields for a log line: credentials are never logged, at any level. */
function redacted(fields: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  if (!Object.hasOwn(fields, "ticket") && !Object.hasOwn(fields, "token")) return fields;
  const copy: Record<string, unknown> = { ...fields };
  if (Object.hasOwn(copy, "ticket")) copy.ticket = REDACTED;
  if (Object.hasOwn(copy, "token")) copy.token = REDACTED;
  return copy;
}
