import type { Clock } from "../core/clock.ts";
import type {
  PresenceChange,
  PresenceData,
  PresenceEntry,
  PresenceExpiry,
  PresenceStore,
} from "../core/presence_tracker.ts";

/** A channel's entries, and a time no entry expires before (rewrites only move expiries later). */
interface Entries extends Map<string, Stored> {
  nextExpiry?: number;
}

interface Stored {
  readonly user: string;
  readonly fields: Readonly<Record<string, unknown>>;
  expiresAt: number;
}

/**
 * Presence entries in this process (the memory broker's, extension E3): one node sees only its own sessions, as it
 * only delivers its own publishes. Entries expire as in Redis, on the given clock, so both stores behave alike.
 */
export class MemoryPresenceStore implements PresenceStore {
  readonly #clock: Clock;
  readonly #channels = new Map<string, Entries>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  updatePresence(channel: string, change: PresenceChange): Promise<PresenceExpiry & { readonly restored: readonly string[] }> {
    const now = this.#clock.now();
    let entries = this.#channels.get(channel);
    const adding = new Set(change.add.map((e) => e.session));
    const expired = entries ? this.#purge(entries, now, adding) : [];
    const restored: string[] = [];
    if (change.add.length > 0 && !entries) this.#channels.set(channel, entries = new Map());
    const expiresAt = now + change.ttl * 1000;
    for (const { session, user } of change.add) {
      const stored = entries!.get(session);
      if (!stored) restored.push(session);
      if (stored?.user === user) stored.expiresAt = expiresAt;
      else entries!.set(session, { user, fields: JSON.parse(user), expiresAt });
    }
    if (entries && change.add.length > 0) entries.nextExpiry = Math.min(entries.nextExpiry ?? expiresAt, expiresAt);
    for (const session of change.remove) entries?.delete(session);
    if (entries?.size === 0) this.#channels.delete(channel);
    return Promise.resolve({ expired, restored });
  }

  readPresence(channel: string): Promise<PresenceData & PresenceExpiry> {
    const entries = this.#channels.get(channel);
    if (!entries) return Promise.resolve({ count: 0, users: [], expired: [] });
    const expired = this.#purge(entries, this.#clock.now());
    const users = new Map<string, Readonly<Record<string, unknown>>>();
    for (const stored of entries.values()) if (!users.has(stored.user)) users.set(stored.user, stored.fields);
    const count = entries.size;
    if (count === 0) this.#channels.delete(channel);
    return Promise.resolve({ count, users: [...users.values()], expired });
  }

  /** Forget everything (the broker closed). */
  clear(): void {
    this.#channels.clear();
  }

  /** Remove the entries past their expiry (but those being rewritten now) and return them. */
  #purge(entries: Entries, now: number, keep?: ReadonlySet<string>): PresenceEntry[] {
    const expired: PresenceEntry[] = [];
    // Most calls come before any entry can have expired: no walk over a large channel for them.
    if (entries.nextExpiry !== undefined && entries.nextExpiry > now) return expired;
    let next: number | undefined;
    for (const [session, stored] of entries) {
      if (stored.expiresAt > now || keep?.has(session)) {
        next = Math.min(next ?? stored.expiresAt, stored.expiresAt);
        continue;
      }
      entries.delete(session);
      expired.push({ session, user: stored.user });
    }
    entries.nextExpiry = next;
    return expired;
  }
}
