import type { HistoryOptions, HistoryState } from "../broker/broker.ts";
import type { Config } from "../config.ts";
import type { CallbackName, PostOptions, ServiceAnswer } from "../services/service_client.ts";
import type { Activity } from "./activity.ts";
import type { Clock } from "./clock.ts";
import type { HubMember } from "./hub.ts";
import type { Observer } from "./observer.ts";
import type { PresenceTracker } from "./presence_tracker.ts";

/** The service calls the core makes (the `ServiceClient` in production, a scripted one in tests). */
export interface Services {
  post(url: string, body: unknown, callback: CallbackName, options?: PostOptions): Promise<ServiceAnswer>;
}

/** History reads (the broker's; extension E1). */
export interface HistoryReader {
  history(channel: string, history: HistoryOptions, since?: number): Promise<HistoryState>;
}

/** What a token check answers (extension E2): the auth fields and when they lapse, or why it was refused. */
export type TokenCheck =
  | { readonly ok: true; readonly fields: Readonly<Record<string, unknown>>; readonly expiresAt?: number }
  | { readonly ok: false; readonly reason: string };

/** JWT verification for `auth` with `method: "jwt"` (`JwtVerifier` in production). */
export interface TokenVerifier {
  verify(token: string): Promise<TokenCheck>;
}

/** What a subscription needs of the hub. */
export interface Registry {
  /** Register; resolves once the broker delivers the channel (rejects, unregistered, if it cannot). */
  add(member: HubMember): Promise<void>;
  /** Unregister; idempotent. */
  remove(member: HubMember): void;
  /** The member became active: it may join the runtime's fan-out. */
  activated(member: HubMember): void;
}

/**
 * What sessions, subscriptions and the event handlers share, instead of a whole router: the config, time, the
 * observer, the service calls and the hub. The router provides it; unit tests build one from fakes.
 */
export interface CoreContext {
  readonly config: Config;
  readonly clock: Clock;
  /** Counts the work in flight (events, teardowns, renewals, heartbeats): the core's idle signal. */
  readonly activity: Activity;
  readonly observer: Observer;
  readonly services: Services;
  readonly hub: Registry;
  /** Where history subscriptions read their position and the messages to recover. */
  readonly history: HistoryReader;
  /** Present when `authentication.jwt` is configured. */
  readonly tokens?: TokenVerifier;
  /** This node's presence entries (extension E3); without it no service has presence. */
  readonly presenceTracker?: PresenceTracker;
}
