import * as v from "valibot";
import { parseJson } from "../protocol/json.ts";

/**
 * The broker channel Shoal's nodes talk on (under the broker's channel prefix, like every channel). It has no dot,
 * so it is never a subscription name (docs/protocol.md §5.2): no client can subscribe to it, and `POST /publish`
 * refuses it.
 */
export const CONTROL_CHANNEL = "__shoal_control";

/** Which sessions a command is for: those whose auth fields include every given one (Python `==`), or one by id. */
export type SessionTarget =
  | { readonly auth: Readonly<Record<string, unknown>> }
  | { readonly session: string };

/** What a node says of itself every report interval (and once more whenever it sees a node it did not know). */
export interface Report {
  readonly type: "report";
  readonly node: string;
  readonly runtime: string;
  readonly version: string;
  /** Seconds since the node started. */
  readonly uptime: number;
  /** Seconds until its next report: the others forget it after three of them without one. */
  readonly interval: number;
  readonly connections: number;
  readonly subscriptions: number;
  /** Subscription name and the node's sessions subscribed to it. */
  readonly channels: readonly (readonly [string, number])[];
}

/** Everything said on the control channel; `node` is the sender's id. */
export type ControlMessage =
  | Report
  | { readonly type: "leave"; readonly node: string }
  | { readonly type: "disconnect"; readonly node: string; readonly target: SessionTarget }
  | { readonly type: "unsubscribe"; readonly node: string; readonly target: SessionTarget; readonly subscription: string };

const count = v.pipe(v.number(), v.integer(), v.minValue(0));
const text = v.pipe(v.string(), v.minLength(1), v.maxLength(1024));
const target = {
  auth: v.optional(v.record(v.string(), v.unknown())),
  session: v.optional(text),
};

// Strict objects: a message `POST /publish` could carry (it has `subscription` and `data`) is never one of these.
const Schema = v.variant("type", [
  v.strictObject({
    type: v.literal("report"),
    node: text,
    runtime: v.string(),
    version: v.string(),
    uptime: count,
    interval: v.pipe(v.number(), v.finite(), v.gtValue(0), v.maxValue(3600)),
    connections: count,
    subscriptions: count,
    channels: v.array(v.tuple([v.string(), count])),
  }),
  v.strictObject({ type: v.literal("leave"), node: text }),
  v.strictObject({ type: v.literal("disconnect"), node: text, ...target }),
  v.strictObject({ type: v.literal("unsubscribe"), node: text, ...target, subscription: text }),
]);

/** A control message's text, or why it is ignored (another version's message, or not Shoal's at all). */
export function parseControlMessage(payload: string):
  | { readonly ok: true; readonly message: ControlMessage }
  | { readonly ok: false; readonly reason: string } {
  const json = parseJson(payload);
  if (!json.ok) return { ok: false, reason: json.reason === "too deep" ? "nested too deep" : "not JSON" };
  const parsed = v.safeParse(Schema, json.value);
  if (!parsed.success) return { ok: false, reason: `not a control message: ${parsed.issues[0].message}` };
  const m = parsed.output;
  if (m.type === "report" || m.type === "leave") return { ok: true, message: m as ControlMessage };
  // Exactly one of `auth` and `session` says which sessions.
  if ((m.auth === undefined) === (m.session === undefined)) return { ok: false, reason: "needs one of auth and session" };
  const to: SessionTarget = m.auth !== undefined ? { auth: m.auth } : { session: m.session! };
  if (m.type === "disconnect") return { ok: true, message: { type: "disconnect", node: m.node, target: to } };
  return { ok: true, message: { type: "unsubscribe", node: m.node, target: to, subscription: m.subscription } };
}

/** The text of a control message, as `parseControlMessage` reads it. */
export function controlPayload(message: ControlMessage): string {
  if (message.type === "report" || message.type === "leave") return JSON.stringify(message);
  const { target, ...rest } = message;
  return JSON.stringify({ ...rest, ...target });
}
