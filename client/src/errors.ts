import type { Frame } from "./types.ts";

/**
 * Shoal answered a request with an error reply (docs/protocol.md §3.3), or ended a subscription with a
 * server-initiated unsubscribe (§11.2). `error` is the wire value as sent: usually one of the strings of the
 * protocol's Appendix A, or whatever the service answered (any JSON value, `null` included).
 */
export class ShoalError extends Error {
  /** The reply's `error`, exactly as sent. */
  readonly error: unknown;
  /** The reply's `data` (present when the service gave a truthy one), else undefined. */
  readonly data: unknown;
  /** The whole frame. */
  readonly reply: Frame;

  /** An error for the error reply `reply`. */
  constructor(reply: Frame) {
    const error = reply.error;
    super(typeof error === "string" ? error : `Shoal error: ${JSON.stringify(error) ?? "undefined"}`);
    this.name = "ShoalError";
    this.error = error;
    this.data = reply.data;
    this.reply = reply;
  }
}

/**
 * Why a request ended without a reply from Shoal:
 * - `closed`: `client.close()` was called;
 * - `disconnected`: the connection dropped after the request was sent and before its reply; Shoal may or may not
 *   have processed it (a `send` is not repeated by itself: that would be at-least-once);
 * - `unsubscribed`: the subscription was unsubscribed before its subscribe was answered;
 * - `no-reply`: Shoal processed a `subscribe` without sending an OK (a `before_subscribe` answer that one of the
 *   service's filter fields rejects, docs/protocol.md §5.4 step 12); the SDK unsubscribes it again.
 */
export type RequestFailure = "closed" | "disconnected" | "unsubscribed" | "no-reply";

/** A request ended without a reply from Shoal; `reason` says why. */
export class ShoalRequestError extends Error {
  /** Why the request ended. */
  readonly reason: RequestFailure;

  /** An error for a request that ended for `reason`. */
  constructor(reason: RequestFailure, message: string) {
    super(message);
    this.name = "ShoalRequestError";
    this.reason = reason;
  }
}
