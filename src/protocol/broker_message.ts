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

/** A message a service published (to a broker channel or `POST /publish`), validated. */
export interface PublishedMessage {
  readonly subscription: string;
  readonly data: unknown;
  readonly options: MessageOptions;
  /** Passed through unchanged when it is a valid ISO-8601 string. */
  readonly publishedAt?: string;
  /** The whole top-level object, where filter fields are looked up. */
  readonly fields: Readonly<Record<string, unknown>>;
}

export type ParseResult =
  | { readonly ok: true; readonly message: PublishedMessage; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly reason: string };

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

/** Decode a broker payload (JSON text) and validate it. */
export function parsePublishedPayload(payload: string): ParseResult {
  const json = parseJson(payload);
  if (!json.ok) return { ok: false, reason: json.reason === "too deep" ? TOO_DEEP : "invalid JSON" };
  return parsePublishedMessage(json.value);
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
