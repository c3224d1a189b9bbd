import * as v from "valibot";
import { MAX_JSON_DEPTH, parseJson } from "./json.ts";
import { finiteFloat, hashKey, isIsoDateTime } from "./pyvalues.ts";

/** Delivery options of a published message, already reduced to what the pipeline uses. */
export interface MessageOptions {
  /** Finite order value, or undefined when absent or invalid (the message is then unordered). */
  readonly order?: number;
  readonly orderKey: string;
  /** Throttle window in seconds, or undefined when absent, invalid or not positive. */
  readonly throttle?: number;
  readonly throttleKey: string;
}

/** Where a message sits in its subscription's history (extension E1). */
export interface HistoryPosition {
  /** Grows by exactly 1 per appended message; the first is 1. */
  readonly offset: number;
  /** Changes whenever the history was lost and restarted; offsets compare only within one epoch. */
  readonly epoch: string;
}

/** A message a service published (to a broker channel or `POST /publish`), validated. */
export interface PublishedMessage {
  readonly subscription: string;
  readonly data: unknown;
  readonly options: MessageOptions;
  /** Passed through unchanged when it is a valid ISO-8601 string. */
  readonly publishedAt?: string;
  /** The whole top-level object, where filter fields are looked up. */
  readonly fields: Readonly<Record<string, unknown>>;
  /** Set when the message was appended to a history: it came in a history envelope, or from the store. */
  readonly position?: HistoryPosition;
  /** A history offset that delivers nothing here (its message could not be used): it only moves the position. */
  readonly skip?: true;
}

export type ParseResult =
  | { readonly ok: true; readonly message: PublishedMessage; readonly warnings: readonly string[] }
  /** `position`: the refused message came in a history envelope, whose offset it still takes. */
  | { readonly ok: false; readonly reason: string; readonly position?: HistoryPosition };

const Shape = v.looseObject({ subscription: v.string(), data: v.unknown() });
const NO_OPTIONS: MessageOptions = { orderKey: "null", throttleKey: "null" };

/** Validate a message object. Bad optional fields are ignored with a warning (decisions 7 and 11). */
export function parsePublishedMessage(value: unknown): ParseResult {
  const shape = v.safeParse(Shape, value);
  if (!shape.success || !Object.hasOwn(value as object, "data")) {
    return { ok: false, reason: "invalid service event: needs a string subscription and a data key" };
  }
  const fields = shape.output as Record<string, unknown>;
  const warnings: string[] = [];
  const options = readOptions(fields.options, warnings);
  let publishedAt: string | undefined;
  if (fields.published_at !== undefined) {
    if (typeof fields.published_at === "string" && isIsoDateTime(fields.published_at)) {
      publishedAt = fields.published_at;
    } else {
      warnings.push("invalid published_at format");
    }
  }
  return {
    ok: true,
    message: { subscription: fields.subscription as string, data: fields.data, options, publishedAt, fields },
    warnings,
  };
}

/** Why a message nested past the limit is dropped. */
export const TOO_DEEP = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;

/**
 * Decode a broker payload (JSON text) and validate it: a published message, or a history envelope
 * `{"offset":N,"epoch":"E","message":{…}}` (what an append publishes: `historyEnvelope`), whose message gets the
 * position. An envelope is told apart by having no `subscription` key, which every message needs.
 */
export function parsePublishedPayload(payload: string): ParseResult {
  const json = parseJson(payload);
  if (!json.ok) {
    // An envelope whose message is unusable (too deep once wrapped, not JSON) still took its offset.
    return { ok: false, reason: json.reason === "too deep" ? TOO_DEEP : "invalid JSON", position: envelopePrefix(payload) };
  }
  const position = envelopePosition(json.value);
  if (!position) return parsePublishedMessage(json.value);
  const parsed = parsePublishedMessage((json.value as { message: unknown }).message);
  return parsed.ok ? { ...parsed, message: { ...parsed.message, position } } : { ...parsed, position };
}

/** The text every append publishes starts with (`historyEnvelope`): read without parsing the rest. */
const ENVELOPE_PREFIX = /^\{"offset":([1-9][0-9]{0,14}),"epoch":("(?:[^"\\]|\\.)*"),"message":/;

function envelopePrefix(payload: string): HistoryPosition | undefined {
  const match = ENVELOPE_PREFIX.exec(payload.slice(0, 1024));
  if (!match) return undefined;
  try {
    return { offset: Number(match[1]), epoch: JSON.parse(match[2]) };
  } catch {
    return undefined;
  }
}

/** A stand-in for an offset whose message is not delivered here: it only moves a subscription's position. */
export function skippedOffset(subscription: string, position: HistoryPosition): PublishedMessage {
  return { subscription, data: null, options: NO_OPTIONS, fields: {}, position, skip: true };
}

/** A stored history entry (the message as published, and its offset) as a message with its position. */
export function parseStoredMessage(payload: string, position: HistoryPosition): ParseResult {
  const parsed = parsePublishedPayload(payload);
  return parsed.ok ? { ...parsed, message: { ...parsed.message, position } } : parsed;
}

/** The text an append publishes live: the message with its position, built without re-serializing it. */
export function historyEnvelope(offset: number, epoch: string, payload: string): string {
  return `{"offset":${offset},"epoch":${JSON.stringify(epoch)},"message":${payload}}`;
}

function envelopePosition(value: unknown): HistoryPosition | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  if (Object.hasOwn(o, "subscription") || !Object.hasOwn(o, "message")) return undefined;
  const { offset, epoch } = o;
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 1 || typeof epoch !== "string") {
    return undefined;
  }
  return { offset, epoch };
}

/** The options of a `before_subscribe` answer, read with the same rules as a published message. */
export function readOptions(raw: unknown, warnings: string[] = []): MessageOptions {
  if (raw === undefined) return NO_OPTIONS;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    if (raw === null) warnings.push("options is null; ignored");
    return NO_OPTIONS;
  }
  const o = raw as Record<string, unknown>;
  let order: number | undefined;
  let orderKey = "null";
  let throttle: number | undefined;
  let throttleKey = "null";
  if (Object.hasOwn(o, "order")) {
    const key = hashKey(o.order_key);
    order = finiteFloat(o.order);
    if (order === undefined) warnings.push("invalid order; ignored");
    else if (key === undefined) {
      warnings.push("order_key must be a string, number, boolean or null; order ignored");
      order = undefined;
    } else orderKey = key;
  }
  if (Object.hasOwn(o, "throttle")) {
    const key = hashKey(o.throttle_key);
    throttle = finiteFloat(o.throttle);
    if (throttle === undefined) warnings.push("invalid throttle; ignored");
    else if (key === undefined) {
      warnings.push("throttle_key must be a string, number, boolean or null; throttle ignored");
      throttle = undefined;
    } else throttleKey = key;
    // A window of zero or less never holds anything back.
    if (throttle !== undefined && throttle <= 0) throttle = undefined;
  }
  return { order, orderKey, throttle, throttleKey };
}

/**
 * A presence notice between nodes (extension E3, `joinLeave`): a session subscribed to the channel's subscription
 * (`join`) or left it (`leave`, also when its entry expired). Published on the subscription's own channel, and told
 * apart from a published message by having no `subscription` key, as the history envelope is.
 */
export interface PresenceControl {
  readonly kind: "join" | "leave";
  /** The session that joined or left: it gets no notice of its own. */
  readonly session: string;
  /** Its auth fields. */
  readonly user: Readonly<Record<string, unknown>>;
}

/** The text every presence notice starts with (`presenceControl`): anything else is not one. */
const PRESENCE_PREFIX = '{"presence":';

/** The payload of a presence notice; `user` is the JSON text of the session's auth fields (an object). */
export function presenceControl(kind: PresenceControl["kind"], session: string, user: string): string {
  return `${PRESENCE_PREFIX}"${kind}","session":${JSON.stringify(session)},"user":${user}}`;
}

/** A broker payload that is a presence notice, validated; undefined for anything else (a message, say). */
export function parsePresenceControl(payload: string): PresenceControl | undefined {
  if (!payload.startsWith(PRESENCE_PREFIX)) return undefined;
  const json = parseJson(payload);
  if (!json.ok || !isPlainObject(json.value)) return undefined;
  const o = json.value;
  if (Object.hasOwn(o, "subscription") || (o.presence !== "join" && o.presence !== "leave")) return undefined;
  if (typeof o.session !== "string" || !isPlainObject(o.user)) return undefined;
  return { kind: o.presence, session: o.session, user: o.user };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
