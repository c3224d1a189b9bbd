import { getLogger } from "@logtape/logtape";
import type { ServiceConfig } from "../config.ts";
import { type HistoryPosition, type PublishedMessage, skippedOffset } from "../protocol/broker_message.ts";
import { Errors, HistoryErrors } from "../protocol/errors.ts";
import { messageFrame } from "../protocol/frames.ts";
import { pyEquals } from "../protocol/pyvalues.ts";
import { isoTimestamp } from "./clock.ts";
import { Delivery, passesFilter, type Verdict } from "./delivery.ts";
import type { PostOptions } from "../services/service_client.ts";
import type { CoreContext } from "./context.ts";
import { NO_FIELDS } from "./fields.ts";
import type { FrameSource, HubMember } from "./hub.ts";

const log = getLogger(["shoal", "subscription"]);

/** What a subscription needs of its session (the `Session` class, or a fake in tests). */
export interface SubscriptionOwner {
  readonly id: string;
  /** What authentication stored; part of every callback body and filter lookup. */
  readonly authInfo: Readonly<Record<string, unknown>>;
  /** Aborted once the connection is gone. */
  readonly signal: AbortSignal;
  /** The session's subscriptions by name, where a message on one channel finds the one it names. */
  readonly subscriptions: ReadonlyMap<string, Subscription>;
  sendText(text: string): void;
  joinTopic(topic: string): boolean;
  leaveTopic(topic: string): void;
  /** Remove a subscription whose authorization was revoked, in turn with the client's events. */
  revoke(subscription: Subscription, error: unknown): void;
}

/** Most messages kept for a subscription whose `before_subscribe` is still running. */
const MAX_SETUP_BUFFER = 10_000;

/**
 * One session's subscription to one name. Pending while it is being set up (published messages are buffered),
 * active once confirmed, closed when removed; each state change is one-way.
 */
export class Subscription implements HubMember {
  readonly name: string;
  readonly serviceName: string;
  readonly service: ServiceConfig;
  readonly session: SubscriptionOwner;
  /** Extra fields the client sent that the service lists, echoed in every message and callback. */
  readonly extra: Readonly<Record<string, unknown>>;
  /** Equal for subscriptions whose frames are equal: the cache key of serialized frames. */
  readonly extraKey: string;
  /** The native fan-out topic this subscription joined (set by the hub), if any. */
  topic: string | undefined;
  #authorizerFields: Readonly<Record<string, unknown>> = NO_FIELDS;
  #state: "pending" | "active" | "closed" = "pending";
  /** Messages that arrived while pending; created by the first one. */
  #buffer: PublishedMessage[] | undefined;
  readonly #router: CoreContext;
  /** Order and throttle state; created by the first message that asks for either. */
  #delivery: Delivery<PublishedMessage> | undefined;
  #renewalTimer: unknown;
  #heartbeatTimer: unknown;
  /**
   * History subscriptions (extension E1): the position of the last message this client has been given (or told
   * of, in the subscribe OK). Live messages at or before it are duplicates; one past `offset + 1`, or of another
   * epoch, is a hole. Set at activation.
   */
  #position: HistoryPosition | undefined;
  /**
   * True while the live stream has not yet caught up with `#position` (a history read can answer before the
   * subscriber connection delivers the messages it counted): the subscription checks each live message itself
   * and joins the native fan-out only with the first one past its position.
   */
  #catchingUp = false;
  /** A hole ended this history subscription: it delivers nothing more while its removal is queued. */
  #lost = false;
  /** Inside `activate`, which joins the fan-out itself once it has delivered everything it holds. */
  #activating = false;

  constructor(
    router: CoreContext,
    session: SubscriptionOwner,
    options: {
      name: string;
      serviceName: string;
      service: ServiceConfig;
      extra: Readonly<Record<string, unknown>>;
      /** `JSON.stringify(extra)` when the caller has it ("" for no extra fields). */
      extraKey?: string;
    },
  ) {
    this.#router = router;
    this.session = session;
    this.name = options.name;
    this.serviceName = options.serviceName;
    this.service = options.service;
    this.extra = options.extra;
    this.extraKey = options.extraKey ?? (Object.keys(options.extra).length === 0 ? "" : JSON.stringify(options.extra));
  }

  joinTopic(topic: string): boolean {
    return this.session.joinTopic(topic);
  }

  leaveTopic(topic: string): void {
    this.session.leaveTopic(topic);
  }

  route(message: PublishedMessage, frame: FrameSource): void {
    this.session.subscriptions.get(message.subscription)?.receive(message, frame);
  }

  get active(): boolean {
    return this.#state === "active";
  }

  get closed(): boolean {
    return this.#state === "closed";
  }

  get authorizerFields(): Readonly<Record<string, unknown>> {
    return this.#authorizerFields;
  }

  /** Keep the configured authorizer fields present in an authorizer answer; true when they changed. */
  storeAuthorizerFields(answer: Readonly<Record<string, unknown>>): boolean {
    let fields: Record<string, unknown> | undefined;
    for (const f of this.service.authorizerFields) if (Object.hasOwn(answer, f)) (fields ??= {})[f] = answer[f];
    const changed = !pyEquals(fields ?? NO_FIELDS, this.#authorizerFields);
    this.#authorizerFields = fields ?? NO_FIELDS;
    return changed;
  }

  /**
   * The options of this subscription's callbacks made for its client: bounded per service, and cancelled when
   * the client goes (teardown's own unsubscribe callbacks are not: see `unsubscribeCallbacks`).
   */
  get callOptions(): PostOptions {
    return { service: this.serviceName, signal: this.session.signal };
  }

  /** The body every callback of this subscription gets (docs/protocol.md §9.1): later keys override earlier ones. */
  body(): Record<string, unknown> {
    return { subscription: this.name, ...this.extra, ...this.#authorizerFields, ...this.session.authInfo };
  }

  /**
   * Filter fields (decision 4): a field present in the message must equal the subscription's extra field, else
   * its authorizer field, else the session's auth field; a missing value is null.
   */
  matches(fields: Readonly<Record<string, unknown>>): boolean {
    return passesFilter(this.service.filterFields, fields, this);
  }

  /** This subscription's value of a filter field: its extra field, else its authorizer field, else the session's. */
  fieldValue(field: string): unknown {
    if (this.service.extraFields.includes(field)) return this.extra[field];
    if (Object.hasOwn(this.#authorizerFields, field)) return this.#authorizerFields[field];
    return this.session.authInfo[field];
  }

  /** The position of the last message given to the client (history subscriptions, once active). */
  get position(): HistoryPosition | undefined {
    return this.#position;
  }

  /** A published message routed to this subscription. */
  receive(message: PublishedMessage, frame: FrameSource): void {
    if (this.#state === "closed" || this.#lost) return;
    if (this.#state === "active" && this.#position && message.position && !this.#live(message.position)) return;
    if (this.#state === "pending") {
      const buffer = this.#buffer ??= [];
      if (buffer.length >= MAX_SETUP_BUFFER) {
        buffer.shift();
        log.warn("setup buffer full; oldest message dropped", { session: this.session.id, subscription: this.name });
      }
      buffer.push(message);
      return;
    }
    if (this.#pass(message) === "deliver") this.#deliver(frame(this));
  }

  /**
   * A message the hub found uniform (addressed to this name, no filter field, order or throttle): an active
   * subscription sends it as is; false when it did not (pending or closed), so the hub counts only what went out.
   */
  receiveUniform(message: PublishedMessage, frame: FrameSource): boolean {
    if (this.#state !== "active" || this.#lost) {
      this.receive(message, frame);
      return false;
    }
    if (this.#position && message.position && !this.#live(message.position)) return false;
    this.session.sendText(frame(this));
    return true;
  }

  /** A history offset whose message is not delivered here: the position moves past it (or finds a hole). */
  skip(position: HistoryPosition): void {
    if (this.#state === "closed" || this.#lost || !this.service.history) return;
    if (this.#state === "pending") {
      (this.#buffer ??= []).push(skippedOffset(this.name, position));
      return;
    }
    if (this.#position) this.#live(position);
  }

  /**
   * A live message's position: served by the native fan-out, the hub has already checked its channel's sequence
   * (it sees every message there), so the position just follows; otherwise this subscription checks it.
   */
  #live(position: HistoryPosition): boolean {
    if (this.topic !== undefined) {
      this.#position = position;
      return true;
    }
    return this.#advance(position);
  }

  /**
   * Move the position past a live message of a history subscription: true when it is the next one (deliver it),
   * false for a duplicate (drop it) or a hole (this subscription is ended with "Insufficient state.").
   */
  #advance(next: HistoryPosition): boolean {
    const position = this.#position!;
    if (next.epoch === position.epoch && next.offset <= position.offset) return false;
    if (next.epoch !== position.epoch || next.offset !== position.offset + 1) {
      this.insufficientState(`expected offset ${position.offset + 1} of epoch ${position.epoch}, got ${next.offset} of ${next.epoch}`);
      return false;
    }
    this.#position = next;
    if (this.#catchingUp) {
      // The live stream has caught up: from the next message on, the hub's fan-out (and its own check) serves.
      this.#catchingUp = false;
      if (!this.#activating) this.#router.hub.activated(this);
    }
    return true;
  }

  /**
   * The live stream has a hole this client cannot see past (messages lost while the broker was disconnected, an
   * epoch change, a setup buffer that overflowed): end the subscription with "Insufficient state." so the client
   * subscribes again with `recover` (docs/protocol.md, history).
   */
  insufficientState(why: string): void {
    if (this.#state !== "active" || this.#lost) return;
    log.warn("history subscription lost its place; ending it", { session: this.session.id, subscription: this.name, why });
    this.#router.observer.historyGap?.();
    // Nothing more reaches the client from here; the session removes it in turn with its events.
    this.#lost = true;
    this.#router.hub.remove(this);
    this.session.revoke(this, HistoryErrors.insufficientState);
  }

  /** Run the `before_subscribe` answer through filter, order and throttle: true when the OK may be sent. */
  admitAnswer(answer: Readonly<Record<string, unknown>>, options: PublishedMessage["options"]): boolean {
    if (!this.matches(answer)) return false;
    const message = { subscription: this.name, data: answer.data, options, fields: answer };
    return this.#offer(message, options) === "deliver";
  }

  /**
   * Confirm: deliver the recovered messages (history subscriptions), then what was buffered during setup (without
   * received_at/queue_size), then start periodic tasks. `history.position` is where the client stands after the
   * replay: the newest stored message, which the OK told it of; buffered messages up to it are duplicates.
   */
  activate(history?: { position: HistoryPosition; replay: readonly PublishedMessage[] }): void {
    if (this.#state !== "pending") return;
    this.#state = "active";
    const buffered = this.#buffer ?? [];
    this.#buffer = undefined;
    // The replay is the stored range after the client's offset, complete and in order: no check needed.
    for (const message of history?.replay ?? []) this.#deliverStored(message);
    if (history) {
      this.#position = history.position;
      this.#catchingUp = true;
    }
    this.#activating = true;
    for (const message of buffered) {
      if (this.#position && message.position && !this.#advance(message.position)) {
        if (this.#lost) break; // a hole ended the subscription
        continue;
      }
      if (!message.skip) this.#deliverStored(message);
    }
    this.#activating = false;
    if (this.#lost) return;
    // After the buffered messages, so none of them is overtaken by a fanned-out one; a history subscription joins
    // once the live stream has caught up with its position (#advance).
    if (!this.#catchingUp) this.#router.hub.activated(this);
    if (this.service.authorizationRenewalPeriod !== undefined) this.#scheduleRenewal();
    if (this.service.heartbeatPeriod !== undefined) {
      this.#scheduleHeartbeat(this.service.heartbeatPeriod * this.#router.clock.random());
    }
  }

  /** A recovered or buffered message, through filter, order and throttle (no received_at or queue_size). */
  #deliverStored(message: PublishedMessage): void {
    if (this.#pass(message) !== "deliver") return;
    this.#deliver(JSON.stringify(messageFrame(this.name, message.data, {
      publishedAt: message.publishedAt,
      extra: this.extra,
      sentAt: isoTimestamp(this.#router.clock.now()),
      position: message.position,
    })));
  }

  /** A presence notice about another session (extension E3): only an active subscription passes it on. */
  presenceNotice(text: string, origin: string): void {
    if (this.#state !== "active" || this.#lost || origin === this.session.id) return;
    this.session.sendText(text);
  }

  /**
   * Stop everything this subscription owns: buffer, throttle timers, renewal and heartbeat, and its presence entry.
   * Idempotent.
   */
  close(): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    if (this.service.presence) this.#router.presenceTracker?.leave(this);
    this.#buffer = undefined;
    this.#delivery?.close();
    if (this.#renewalTimer !== undefined) this.#router.clock.clearTimeout(this.#renewalTimer);
    if (this.#heartbeatTimer !== undefined) this.#router.clock.clearTimeout(this.#heartbeatTimer);
    this.#renewalTimer = this.#heartbeatTimer = undefined;
  }

  #pass(message: PublishedMessage): Verdict | "fields" {
    if (!this.matches(message.fields)) {
      this.#router.observer.filtered?.("fields");
      return "fields";
    }
    const verdict = this.#offer(message, message.options);
    if (verdict !== "deliver") this.#router.observer.filtered?.(verdict);
    return verdict;
  }

  #offer(message: PublishedMessage, options: PublishedMessage["options"]): Verdict {
    if (options.order === undefined && options.throttle === undefined) return "deliver";
    this.#delivery ??= new Delivery(this.#router.clock, (held) => this.#sendHeld(held));
    return this.#delivery.offer(message, options);
  }

  #deliver(text: string): void {
    this.#router.observer.delivered?.(1);
    this.session.sendText(text);
  }

  /** A message the throttle held: only its data (and history position) go out (docs/protocol.md §10.7). */
  #sendHeld(message: PublishedMessage): void {
    if (this.#state !== "active") return;
    this.#deliver(JSON.stringify(messageFrame(this.name, message.data, {
      extra: this.extra,
      position: message.position,
      sentAt: isoTimestamp(this.#router.clock.now()),
    })));
  }

  #scheduleRenewal(): void {
    const { authorizationRenewalPeriod: period = 0, authorizationRenewalJitter: jitter } = this.service;
    const delay = Math.max(0, period - this.#router.clock.random() * jitter);
    this.#renewalTimer = this.#router.clock.setTimeout(() => {
      this.#renewalTimer = undefined;
      this.#router.activity.track(this.#renew())
        .catch((error) => log.error("renewal failed", { subscription: this.name, error }));
    }, delay * 1000);
  }

  /** Periodic re-authorization (docs/protocol.md §11.1, with decisions 3 and 6). */
  async #renew(): Promise<void> {
    const services = this.#router.services;
    const answer = await services.post(this.service.authorizer!, this.body(), "authorizer", this.callOptions);
    if (this.#state !== "active") return;
    if (!answer.ok) return this.session.revoke(this, Errors.serviceUnavailable);
    if (answer.body.status !== "ok") {
      return this.session.revoke(this, Object.hasOwn(answer.body, "error") ? answer.body.error : Errors.unauthorized);
    }
    if (this.storeAuthorizerFields(answer.body) && this.service.onAuthorizationChange) {
      const change = await services.post(
        this.service.onAuthorizationChange,
        this.body(),
        "on_authorization_change",
        this.callOptions,
      );
      if (this.#state !== "active") return;
      if (!change.ok) return this.session.revoke(this, Errors.serviceUnavailable);
      if (change.body.status !== "ok") {
        return this.session.revoke(
          this,
          Object.hasOwn(change.body, "error") ? change.body.error : Errors.unhandledException,
        );
      }
    }
    this.#scheduleRenewal();
  }

  #scheduleHeartbeat(seconds: number): void {
    this.#heartbeatTimer = this.#router.clock.setTimeout(() => {
      this.#heartbeatTimer = undefined;
      this.#router.activity.track(this.#beat())
        .catch((error) => log.error("heartbeat failed", { subscription: this.name, error }));
    }, seconds * 1000);
  }

  async #beat(): Promise<void> {
    const answer = await this.#router.services.post(this.service.onHeartbeat!, this.body(), "on_heartbeat", this.callOptions);
    if (this.#state !== "active") return;
    if (!answer.ok || answer.body.status !== "ok") {
      log.warn("error sending heartbeat to service", { session: this.session.id, subscription: this.name });
    }
    this.#scheduleHeartbeat(this.service.heartbeatPeriod!);
  }
}
