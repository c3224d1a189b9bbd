import type { Clock } from "../core/clock.ts";
import type {
  PresenceChange,
  PresenceEntry,
  PresenceExpiry,
  PresenceSnapshot,
  PresenceStore,
  PresenceUser,
} from "../core/presence_tracker.ts";

interface Stored {
  readonly user: string;
  expiresAt: number;
}

/** One subscription name's entries, and its distinct users kept up to date with them (a read walks no entry). */
interface Channel {
  readonly entries: Map<string, Stored>;
  /** Auth-fields text → the user and how many entries have it. */
  readonly users: Map<string, { readonly user: PresenceUser; count: number }>;
  /** No entry expires before this (rewrites only move expiries later), so most calls need not walk the entries. */
  nextExpiry: number | undefined;
}

/**
 * Presence entries in this process (the memory broker's, extension E3): one node sees only its own sessions, as it
 * only delivers its own publishes. Entries expire as in Redis, on the given clock, so both stores behave alike.
 */
export class MemoryPresenceStore implements PresenceStore {
  readonly #clock: Clock;
  readonly #channels = new Map<string, Channel>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    const now = this.#clock.now();
    let state = this.#channels.get(channel);
    const expired = state ? this.#purge(state, now, new Set(change.add.map((e) => e.session))) : [];
    const restored: string[] = [];
    if (change.add.length > 0 && !state) {
      this.#channels.set(channel, state = { entries: new Map(), users: new Map(), nextExpiry: undefined });
    }
    const expiresAt = now + change.ttl * 1000;
    for (const { session, user } of change.add) {
      const stored = state!.entries.get(session);
      if (!stored) restored.push(session);
      if (stored?.user === user) {
        stored.expiresAt = expiresAt;
        continue;
      }
      if (stored) this.#forget(state!, stored.user);
      state!.entries.set(session, { user, expiresAt });
      const known = state!.users.get(user);
      if (known) known.count++;
      else state!.users.set(user, { user: { text: user, fields: JSON.parse(user) }, count: 1 });
    }
    if (state && change.add.length > 0) state.nextExpiry = Math.min(state.nextExpiry ?? expiresAt, expiresAt);
    for (const session of change.remove) {
      const stored = state?.entries.get(session);
      if (!stored) continue;
      state!.entries.delete(session);
      this.#forget(state!, stored.user);
    }
    if (state?.entries.size === 0) this.#channels.delete(channel);
    return Promise.resolve({ expired, restored });
  }

  readPresence(channel: string): Promise<PresenceSnapshot & PresenceExpiry> {
    const state = this.#channels.get(channel);
    if (!state) return Promise.resolve({ count: 0, users: [], expired: [] });
    const expired = this.#purge(state, this.#clock.now());
    const count = state.entries.size;
    if (count === 0) this.#channels.delete(channel);
    return Promise.resolve({ count, users: [...state.users.values()].map((u) => u.user), expired });
  }

  /** Forget everything (the broker closed). */
  clear(): void {
    this.#channels.clear();
  }

  #forget(state: Channel, user: string): void {
    const known = state.users.get(user);
    if (known && --known.count === 0) state.users.delete(user);
  }

  /** Remove the entries past their expiry (but those being rewritten now) and return them. */
  #purge(state: Channel, now: number, keep?: ReadonlySet<string>): PresenceEntry[] {
    const expired: PresenceEntry[] = [];
    if (state.nextExpiry !== undefined && state.nextExpiry > now) return expired;
    let next: number | undefined;
    for (const [session, stored] of state.entries) {
      if (stored.expiresAt > now || keep?.has(session)) {
        next = Math.min(next ?? stored.expiresAt, stored.expiresAt);
        continue;
      }
      state.entries.delete(session);
      this.#forget(state, stored.user);
      expired.push({ session, user: stored.user });
    }
    state.nextExpiry = next;
    return expired;
  }
}
