import type { ServiceConfig } from "../config.ts";
import type { HistoryState } from "../broker/broker.ts";
import {
  type HistoryPosition,
  parseStoredMessage,
  type PublishedMessage,
  readOptions,
} from "../protocol/broker_message.ts";
import { Errors, EventError, HistoryErrors, JwtErrors, LimitErrors, PresenceErrors } from "../protocol/errors.ts";
import { okFrame, presenceReplyText } from "../protocol/frames.ts";
import { getLogger } from "@logtape/logtape";
import { truthy } from "../protocol/pyvalues.ts";
import { utf8Exceeds } from "../protocol/utf8.ts";
import type { ServiceAnswer } from "../services/service_client.ts";
import type { CoreContext } from "./context.ts";
import type { EventHandler, Session, SessionHandlers } from "./session.ts";
import { NO_FIELDS } from "./fields.ts";
import { Subscription } from "./subscription.ts";

type Fields = Readonly<Record<string, unknown>>;

const log = getLogger(["shoal", "subscription"]);

/** The key of the ticket endpoint's `limits.maxCallbacksPerService` bound (no service name has a dot). */
const TICKET_SERVICE = "authentication.ticket";

/** The client events that reach a handler (ping is answered by the session itself). */
export const EVENT_HANDLERS: SessionHandlers["events"] = {
  auth,
  subscribe,
  message,
  unsubscribe,
  presence,
};

/** What a session runs: these handlers and the removal policy below. */
export const SESSION_HANDLERS: SessionHandlers = {
  events: EVENT_HANDLERS,
  remove: removeSubscription,
  unsubscribeCallbacks,
};

/** `auth` (docs/protocol.md §4): ticket validation; a failure keeps the previous identity. */
async function auth(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const method = Object.hasOwn(fields, "method") ? fields.method : "ticket";
  if (method === "jwt" && router.tokens) return await jwtAuth(router, session, fields);
  const ticketConfig = router.config.authentication.ticket;
  if (method !== "ticket" || !ticketConfig) throw new EventError(Errors.authUnsupported);
  if (!truthy(fields.ticket)) throw new EventError(Errors.needsTicket);
  const answer = await router.services.post(ticketConfig.validationUrl, { ticket: fields.ticket }, "ticket", {
    service: TICKET_SERVICE,
    signal: session.signal,
  });
  if (!answer.ok) throw new EventError(Errors.serviceUnavailable);
  if (answer.body.status !== "ok") {
    // The service's error data is deliberately not forwarded for auth (as SocketShark).
    throw new EventError(Object.hasOwn(answer.body, "error") ? answer.body.error : Errors.authFailed);
  }
  const info: Record<string, unknown> = {};
  for (const f of ticketConfig.authFields) {
    // Decision 5: an answer without a configured auth field is a broken answer, not a crash.
    if (!Object.hasOwn(answer.body, f)) throw new EventError(Errors.serviceUnavailable);
    info[f] = answer.body[f];
  }
  session.authInfo = info;
  session.expireAuthAt(undefined); // a ticket identity does not lapse
  session.send(okFrame("auth"));
}

/**
 * `auth` with `method: "jwt"` (extension E2, docs/protocol.md §4.4): the auth fields come from the verified claims;
 * the identity lapses at the token's `exp` (plus the leeway) unless a newer token is accepted first.
 */
async function jwtAuth(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const token = fields.token;
  if (!truthy(token)) throw new EventError(JwtErrors.needsToken);
  const check = typeof token === "string" ? await router.tokens!.verify(token) : { ok: false as const, reason: "malformed" };
  if (!check.ok) {
    router.observer.jwtFailure?.(check.reason);
    log.info("jwt refused", { session: session.id, reason: check.reason });
    // A key set that cannot be fetched is an unavailable dependency, as an unreachable ticket service is.
    throw new EventError(check.reason === "jwks_unavailable" ? Errors.serviceUnavailable : Errors.authFailed);
  }
  session.authInfo = check.fields;
  session.expireAuthAt(check.expiresAt);
  session.send(okFrame("auth"));
}

/** `subscribe` (docs/protocol.md §5.4, with decisions 1 and 2). */
async function subscribe(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const { name, serviceName, service } = resolve(router, fields);
  const extra = pickExtra(service, fields);
  // Stored with the subscription, echoed in every message and part of its fan-out topic: bounded (E5).
  const extraKey = extra === NO_FIELDS ? "" : JSON.stringify(extra);
  if (utf8Exceeds(extraKey, router.config.limits.maxExtraFieldsBytes)) {
    router.observer.refused?.("extra_fields");
    throw new EventError(LimitErrors.extraFieldsTooLarge, { extra });
  }
  // Extension E1: only a history service reads `recover`; elsewhere it is ignored, as any unknown field.
  const recover = service.history ? recoveryPosition(fields, extra) : undefined;
  if (service.requireAuthentication && !truthy(session.authInfo)) {
    throw new EventError(Errors.authRequired, { extra });
  }
  const existing = session.subscriptions.get(name);
  if (existing) throw new EventError(Errors.alreadySubscribed, { extra: existing.extra });
  if (session.subscriptions.size >= router.config.limits.maxSubscriptionsPerConnection) {
    router.observer.refused?.("subscriptions");
    throw new EventError(LimitErrors.tooManySubscriptions, { extra });
  }

  const subscription = new Subscription(router, session, { name, serviceName, service, extra, extraKey });
  if (service.authorizer) {
    const answer = await router.services.post(service.authorizer, subscription.body(), "authorizer", subscription.callOptions);
    failUnlessOk(answer, Errors.unauthorized, extra);
    subscription.storeAuthorizerFields(answer.body);
  }

  // Provisional registration: from here on published messages are buffered for this subscription.
  session.subscriptions.set(name, subscription);
  try {
    await router.hub.add(subscription);
  } catch {
    session.subscriptions.delete(name);
    subscription.close();
    throw new EventError(Errors.serviceUnavailable, { extra });
  }

  let answer: Fields = { status: "ok" };
  if (service.beforeSubscribe) {
    const reply = await router.services.post(
      service.beforeSubscribe,
      subscription.body(),
      "before_subscribe",
      subscription.callOptions,
    );
    if (!reply.ok || reply.body.status !== "ok") {
      // Decision 2: roll the provisional registration back, buffered messages included.
      removeSubscription(router, session, subscription);
    }
    failUnlessOk(reply, Errors.unhandledException, extra);
    answer = reply.body;
  }

  // History (extension E1): read where the subscription stands, after the live channel is subscribed (so nothing
  // published from here on is missed) and once every callback agreed (so nothing is read for a refused client).
  let history: Recovery | undefined;
  if (service.history) {
    try {
      history = recovery(name, await router.history.history(name, service.history, recover?.offset), recover);
    } catch (error) {
      removeSubscription(router, session, subscription);
      if (session.open) log.warn("history read failed", { subscription: name, error });
      throw new EventError(Errors.serviceUnavailable, { extra });
    }
    if (recover) router.observer.recovery?.(history.recovered!, history.replay.length);
  }

  // Presence (extension E3): the entry is written, and its join said, before the OK, so a client that hears of this
  // subscription finds it counted; awaited, so this session's next `presence` event counts itself. Never fails the
  // subscribe: a failed write is retried at the next refresh. (A closed subscription's leave already ran: no entry.)
  if (service.presence && !subscription.closed) await router.presenceTracker?.join(subscription, service.presence);

  // The answer goes through filter, order and throttle; a filtered answer means no OK (docs/protocol.md §5.4 step 12).
  if (subscription.admitAnswer(answer, readOptions(answer.options))) {
    const ok = okFrame("subscribe", { extra, data: answer.data, subscription: name });
    if (history) {
      ok.offset = history.top.offset;
      ok.epoch = history.top.epoch;
      if (history.recovered !== undefined) ok.recovered = history.recovered;
    }
    session.send(ok);
  }
  subscription.activate(history && { position: history.top, replay: history.replay });

  if (service.onSubscribe) {
    await router.services.post(service.onSubscribe, subscription.body(), "on_subscribe", subscription.callOptions);
  }
}

/** A history subscription's start: what the OK tells, where the client stands, and what to replay. */
interface Recovery {
  /** The newest stored message (offset 0 when none): the OK's `offset` and `epoch`, and where the client stands
   * once the replay is delivered. */
  readonly top: HistoryPosition;
  /** Set when the client asked to recover. */
  readonly recovered?: boolean;
  readonly replay: readonly PublishedMessage[];
}

/**
 * Whether a recovery is complete (docs/protocol.md, history): same epoch, and every message after the client's
 * offset still stored, no more than `size` of them. Never a partial replay: otherwise it starts from the top.
 */
function recovery(name: string, state: HistoryState, recover: HistoryPosition | undefined): Recovery {
  const top = { offset: state.top, epoch: state.epoch };
  if (!recover) return { top, replay: [] };
  const missed = state.top - recover.offset;
  const complete = recover.epoch === state.epoch && missed >= 0 && state.entries.length === missed &&
    (missed === 0 || state.entries[0].offset === recover.offset + 1);
  if (!complete) return { top, recovered: false, replay: [] };
  const replay: PublishedMessage[] = [];
  for (const entry of state.entries) {
    const parsed = parseStoredMessage(entry.payload, { offset: entry.offset, epoch: state.epoch });
    // A stored message that does not parse, or names another subscription, is not this one's: skipped, as live.
    if (parsed.ok && parsed.message.subscription === name) replay.push(parsed.message);
    else log.warn("stored message ignored", { subscription: name, offset: entry.offset, reason: parsed.ok ? "another subscription" : parsed.reason });
  }
  return { top, recovered: true, replay };
}

/** The `recover` field of a subscribe: `{offset: integer ≥ 0, epoch: string}`, or undefined when absent. */
function recoveryPosition(fields: Fields, extra: Fields): HistoryPosition | undefined {
  if (!Object.hasOwn(fields, "recover")) return undefined;
  const recover = fields.recover as Record<string, unknown> | null;
  const valid = recover !== null && typeof recover === "object" && !Array.isArray(recover) &&
    typeof recover.offset === "number" && Number.isSafeInteger(recover.offset) && recover.offset >= 0 &&
    typeof recover.epoch === "string";
  if (!valid) throw new EventError(HistoryErrors.invalidRecoveryPosition, { extra });
  return { offset: recover.offset as number, epoch: recover.epoch as string };
}

/** `message` (docs/protocol.md §6.2): forwarded to `on_message`; a reply only when the service gives `data`. */
async function message(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const { name, service } = resolve(router, fields);
  const subscription = session.subscriptions.get(name);
  if (!subscription?.active) throw new EventError(Errors.subscriptionNotFound, { extra: pickExtra(service, fields) });
  if (!service.onMessage) return;
  const body = { ...subscription.body(), data: Object.hasOwn(fields, "data") ? fields.data : null };
  const answer = await router.services.post(service.onMessage, body, "on_message", subscription.callOptions);
  failUnlessOk(answer, Errors.unhandledException, subscription.extra);
  const reply = answer.body;
  if (Object.hasOwn(reply, "data")) {
    session.send(okFrame("message", { extra: subscription.extra, data: reply.data, subscription: name }));
  }
}

/** `unsubscribe` (docs/protocol.md §7.2): a failed `before_unsubscribe` keeps the subscription. */
async function unsubscribe(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const { name, service } = resolve(router, fields);
  const subscription = session.subscriptions.get(name);
  if (!subscription?.active) throw new EventError(Errors.subscriptionNotFound, { extra: pickExtra(service, fields) });
  let data: unknown;
  if (service.beforeUnsubscribe) {
    const answer = await router.services.post(
      service.beforeUnsubscribe,
      subscription.body(),
      "before_unsubscribe",
      subscription.callOptions,
    );
    failUnlessOk(answer, Errors.unhandledException, subscription.extra);
    data = answer.body.data;
  }
  removeSubscription(router, session, subscription);
  session.send(okFrame("unsubscribe", { extra: subscription.extra, data, subscription: name }));
  // Not cancelled if the client leaves now: the subscription is gone, so its teardown will not tell the service.
  if (service.onUnsubscribe) {
    await router.services.post(service.onUnsubscribe, subscription.body(), "on_unsubscribe", {
      service: subscription.serviceName,
    });
  }
}

/**
 * `presence` (extension E3, docs/protocol.md §18): who is subscribed to the name on every node. The name is
 * checked first, as for `message` and `unsubscribe`, then the service, then this session's subscription.
 */
async function presence(router: CoreContext, session: Session, fields: Fields): Promise<void> {
  const { name, service } = resolve(router, fields);
  const tracker = router.presenceTracker;
  if (!service.presence || !tracker) throw new EventError(PresenceErrors.notEnabled);
  if (!session.subscriptions.get(name)?.active) throw new EventError(PresenceErrors.notSubscribed);
  let found;
  try {
    found = await tracker.read(name, service.presence, "event");
  } catch (error) {
    if (session.open) log.warn("presence read failed", { subscription: name, error: String(error) });
    throw new EventError(Errors.serviceUnavailable);
  }
  session.sendText(presenceReplyText(name, found.count, found.users.map((user) => user.text)));
}

/** Take a subscription out of the session and the hub and stop its timers. Idempotent. */
export function removeSubscription(router: CoreContext, session: Session, subscription: Subscription): void {
  if (session.subscriptions.get(subscription.name) === subscription) session.subscriptions.delete(subscription.name);
  subscription.close();
  router.hub.remove(subscription);
}

/**
 * `before_unsubscribe` (its verdict ignored) then `on_unsubscribe`, as on disconnect, shutdown and revocation.
 * Returns the `data` of the `before_unsubscribe` answer, which a revocation notice carries (docs/protocol.md §11.2).
 */
export async function unsubscribeCallbacks(router: CoreContext, subscription: Subscription): Promise<unknown> {
  const { service } = subscription;
  // Not cancelled when the client goes: these are how the service learns that it went.
  const options = { service: subscription.serviceName };
  let data: unknown;
  if (service.beforeUnsubscribe) {
    const answer = await router.services.post(service.beforeUnsubscribe, subscription.body(), "before_unsubscribe", options);
    if (answer.ok) data = answer.body.data;
  }
  if (service.onUnsubscribe) {
    await router.services.post(service.onUnsubscribe, subscription.body(), "on_unsubscribe", options);
  }
  return data;
}

/** Validate `subscription` and find its service (decision 1: a non-string is a format error, not a crash). */
function resolve(router: CoreContext, fields: Fields): { name: string; serviceName: string; service: ServiceConfig } {
  const name = fields.subscription;
  if (typeof name !== "string" || name === "") throw new EventError(Errors.invalidSubscriptionFormat);
  // A lone surrogate becomes U+FFFD in a UTF-8 topic or channel name, so two names would share one channel
  // (and one authorizer's decision); and every name is a broker channel, so its length is bounded (E5).
  if (!name.isWellFormed() || utf8Exceeds(name, router.config.limits.maxSubscriptionLength)) {
    router.observer.refused?.("subscription_name");
    throw new EventError(Errors.invalidSubscriptionFormat);
  }
  const dot = name.indexOf(".");
  if (dot <= 0 || dot === name.length - 1) throw new EventError(Errors.invalidSubscriptionFormat);
  const serviceName = name.slice(0, dot);
  const service = Object.hasOwn(router.config.services, serviceName) ? router.config.services[serviceName] : undefined;
  if (!service) throw new EventError(Errors.invalidService);
  return { name, serviceName, service };
}

/** The service's extra fields present in a request. */
function pickExtra(service: ServiceConfig, fields: Fields): Fields {
  let extra: Record<string, unknown> | undefined;
  for (const f of service.extraFields) if (Object.hasOwn(fields, f)) (extra ??= {})[f] = fields[f];
  return extra ?? NO_FIELDS;
}

/** Throw the client-facing error of a failed callback: the service's `error` (null included) or the default. */
function failUnlessOk(
  answer: ServiceAnswer,
  fallback: string,
  extra: Fields,
): asserts answer is Extract<ServiceAnswer, { ok: true }> {
  if (!answer.ok) throw new EventError(Errors.serviceUnavailable, { extra });
  if (answer.body.status === "ok") return;
  const error = Object.hasOwn(answer.body, "error") ? answer.body.error : fallback;
  throw new EventError(error, { extra, data: answer.body.data });
}
