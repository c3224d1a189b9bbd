import { Errors, MAX_PING_DATA } from "./errors.ts";
import { sliceCodePoints, truthy } from "./pyvalues.ts";

/** A server→client message before serialization. Key order follows SocketShark's, though it is not contract. */
export type Frame = Record<string, unknown>;

type Extra = Readonly<Record<string, unknown>> | undefined;

/** The reply to a frame that is not JSON, or JSON without a usable `event`: it has no `event` key. */
export const INVALID_EVENT_FRAME: Frame = Object.freeze({ status: "error", error: Errors.invalidEvent });

/** `{"event": E, "status": "ok", <extra>, ["data": D], ["subscription": S]}`; data only when not null. */
export function okFrame(event: string, options: { extra?: Extra; data?: unknown; subscription?: string } = {}): Frame {
  const frame: Frame = { event, status: "ok" };
  if (options.extra) Object.assign(frame, options.extra);
  if (options.data !== undefined && options.data !== null) frame.data = options.data;
  if (options.subscription !== undefined) frame.subscription = options.subscription;
  return frame;
}

/** `{"event": E, "status": "error", "error": ERR, <extra>, ["data": D], ["subscription": S]}`; data only when truthy. */
export function errorFrame(
  event: string,
  error: unknown,
  options: { extra?: Extra; data?: unknown; subscription?: string } = {},
): Frame {
  const frame: Frame = { event, status: "error", error };
  if (options.extra) Object.assign(frame, options.extra);
  if (truthy(options.data)) frame.data = options.data;
  if (options.subscription !== undefined) frame.subscription = options.subscription;
  return frame;
}

/** `{"event": "pong", "data": D}`: the ping's string data cut to 128 code points, anything else null. */
export function pongFrame(data: unknown): Frame {
  return { event: "pong", data: typeof data === "string" ? sliceCodePoints(data, MAX_PING_DATA) : null };
}

/** The server-initiated unsubscribe after a revoked authorization: it has no `status` key. */
export function revokedFrame(subscription: string, error: unknown, options: { extra?: Extra; data?: unknown } = {}): Frame {
  const frame: Frame = { event: "unsubscribe", subscription };
  if (options.data !== undefined && options.data !== null) frame.data = options.data;
  frame.error = error;
  if (options.extra) Object.assign(frame, options.extra);
  return frame;
}

/** A published message as delivered: optional fields appear only when given. */
export function messageFrame(
  subscription: string,
  data: unknown,
  options: {
    publishedAt?: string;
    receivedAt?: string;
    queueSize?: number;
    extra?: Extra;
    sentAt: string;
    position?: { readonly offset: number; readonly epoch: string };
  },
): Frame {
  const frame: Frame = { event: "message", subscription, data };
  if (options.position) {
    frame.offset = options.position.offset;
    frame.epoch = options.position.epoch;
  }
  if (options.publishedAt !== undefined) frame.published_at = options.publishedAt;
  if (options.receivedAt !== undefined) frame.received_at = options.receivedAt;
  if (options.queueSize !== undefined) frame.queue_size = options.queueSize;
  if (options.extra) Object.assign(frame, options.extra);
  frame.sent_at = options.sentAt;
  return frame;
}

/**
 * The reply to a `presence` event (extension E3), as text: who is subscribed to `subscription` on every node.
 * `users` are JSON texts of objects (checked where they were read), joined as they are: a room of 10,000 users is
 * not serialized again for each request.
 */
export function presenceReplyText(subscription: string, count: number, users: readonly string[]): string {
  return `{"event":"presence","subscription":${JSON.stringify(subscription)},"status":"ok","data":{"count":${count},"users":[${users.join(",")}]}}`;
}

/** A presence notice (extension E3, `joinLeave`): another session subscribed (`join`) or left (`leave`). */
export function presenceNoticeFrame(kind: "join" | "leave", subscription: string, user: unknown): Frame {
  return { event: kind, subscription, data: user };
}
