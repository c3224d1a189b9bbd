/** The exact error strings of SocketShark's wire contract (its `constants.py`). */
export const Errors = {
  invalidEvent: "Messages must be JSON and contain an event field.",
  unhandledException: "Unhandled exception.",
  eventNotFound: "Event not found.",
  serviceUnavailable: "Service unavailable.",
  authUnsupported: "Authentication method unsupported.",
  unauthorized: "Unauthorized.",
  needsTicket: "Must specify ticket.",
  authFailed: "Authentication failed.",
  authRequired: "Authentication required.",
  invalidSubscriptionFormat: "Invalid subscription format.",
  invalidService: "Invalid service.",
  alreadySubscribed: "Already subscribed.",
  subscriptionNotFound: "Subscription does not exist.",
} as const;

/** Shoal's own error strings for the limits of a public endpoint (extensions E5). */
export const LimitErrors = {
  tooManySubscriptions: "Too many subscriptions.",
  rateLimited: "Rate limit exceeded.",
  originNotAllowed: "Origin not allowed.",
  tooManyConnections: "Too many connections.",
  extraFieldsTooLarge: "Extra fields too large.",
} as const;

/** Shoal's own error strings for JWT authentication (extension E2). */
export const JwtErrors = {
  needsToken: "Must specify token.",
  /** The revocation notice when a session's token lapsed with no newer one accepted. */
  tokenExpired: "Token expired.",
} as const;

/** Shoal's own error strings for presence (extension E3). */
export const PresenceErrors = {
  /** A `presence` request for a subscription this session does not hold (or holds but is still setting up). */
  notSubscribed: "Not subscribed.",
  /** A `presence` request for a subscription of a service without `presence`. */
  notEnabled: "Presence not enabled.",
} as const;

/** Shoal's own error strings for history and recovery (extension E1). */
export const HistoryErrors = {
  /** A `recover` that is not `{offset: integer ≥ 0, epoch: string}`. */
  invalidRecoveryPosition: "Invalid recovery position.",
  /**
   * Server-initiated unsubscribe of a history subscription whose live stream has a hole (an offset missing, the
   * epoch changed, or more messages than Shoal buffers arrived while it recovered): the client subscribes again
   * with `recover` from its last offset (Centrifugo's "insufficient state").
   */
  insufficientState: "Insufficient state.",
} as const;

/** Shoal's own error strings for the admin API (extension E4). */
export const AdminErrors = {
  /** The revocation notice of a subscription an operator ended (`POST /admin/unsubscribe`). */
  unsubscribed: "Unsubscribed.",
} as const;

/** Longest event name that still counts as a valid envelope. */
export const MAX_EVENT_LENGTH = 40;

/** Longest `ping` data echoed back, in code points. */
export const MAX_PING_DATA = 128;

/**
 * An expected, client-facing failure of an event. `error` is the wire value (usually one of `Errors`, or
 * whatever a service answered, `null` included); `data` is forwarded when the service gave a truthy one.
 */
export class EventError extends Error {
  readonly error: unknown;
  readonly data: unknown;
  /** Extra fields to echo instead of the subscription's (the request's, when there is no subscription). */
  readonly extra: Readonly<Record<string, unknown>> | undefined;

  constructor(error: unknown, options: { data?: unknown; extra?: Readonly<Record<string, unknown>> } = {}) {
    super(typeof error === "string" ? error : JSON.stringify(error));
    this.name = "EventError";
    this.error = error;
    this.data = options.data;
    this.extra = options.extra;
  }
}
