import type { Clock } from "../core/clock.ts";
import type { Appended, HistoryEntry, HistoryOptions, HistoryState } from "./broker.ts";

/** Most histories that were read (a subscribe) but never appended to, kept at once. */
export const MAX_UNUSED_HISTORIES = 100_000;

/** A new epoch: unique per history created in this process (and across processes, with the random part). */
export function newEpoch(now: number): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `${now.toString(36)}${random}`;
}

/**
 * One subscription's history: the last `size` messages in a ring that grows as messages come (a history that is
 * only read holds nothing but its epoch), its epoch and newest offset.
 */
class History {
  readonly epoch: string;
  readonly size: number;
  top = 0;
  expiresAt = 0;
  readonly #slots: HistoryEntry[] = [];
  /** Idempotency keys of the stored messages: a key is forgotten with its message. */
  readonly #keys = new Map<string, number>();
  readonly #keyOf: (string | undefined)[] = [];

  constructor(epoch: string, size: number) {
    this.epoch = epoch;
    this.size = size;
  }

  /** Offset of the oldest message still stored (top + 1 when none is). */
  get oldest(): number {
    return Math.max(1, this.top - this.#slots.length + 1);
  }

  offsetOf(key: string): number | undefined {
    return this.#keys.get(key);
  }

  push(payload: string, key: string | undefined): number {
    const offset = ++this.top;
    // Until the ring is full, slot (offset - 1) % size is the next free one, as offsets start at 1.
    const slot = (offset - 1) % this.size;
    const forgotten = this.#keyOf[slot];
    if (forgotten !== undefined) this.#keys.delete(forgotten);
    this.#slots[slot] = { offset, payload };
    this.#keyOf[slot] = key;
    if (key !== undefined) this.#keys.set(key, offset);
    return offset;
  }

  /** The stored messages with offset > since, oldest first. */
  since(since: number): HistoryEntry[] {
    const entries: HistoryEntry[] = [];
    for (let offset = Math.max(since + 1, this.oldest); offset <= this.top; offset++) {
      entries.push(this.#slots[(offset - 1) % this.size]);
    }
    return entries;
  }
}

/**
 * The memory broker's histories (extension E1): a ring of at most `size` messages per subscription, dropped
 * `ttl` seconds after its last append (then, as after a restart, a new epoch begins). A sweep, running only
 * while some history exists, frees the expired ones, so memory is bounded by `size` per live subscription.
 */
export class MemoryHistories {
  readonly #clock: Clock;
  readonly #histories = new Map<string, History>();
  /** Histories read but never appended to (each a subscribe gave an epoch), oldest first: bounded. */
  readonly #unused = new Set<string>();
  #sweep: unknown;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get count(): number {
    return this.#histories.size;
  }

  append(channel: string, payload: string, options: HistoryOptions & { idempotencyKey?: string }): Appended {
    const history = this.#open(channel, options);
    const key = options.idempotencyKey;
    if (key !== undefined) {
      const offset = history.offsetOf(key);
      if (offset !== undefined) return { offset, epoch: history.epoch, duplicate: true };
    }
    const offset = history.push(payload, key);
    this.#unused.delete(channel);
    history.expiresAt = this.#clock.now() + options.ttl * 1000;
    return { offset, epoch: history.epoch, duplicate: false };
  }

  read(channel: string, options: HistoryOptions, since?: number): HistoryState {
    const history = this.#open(channel, options);
    return { epoch: history.epoch, top: history.top, entries: since === undefined ? [] : history.since(since) };
  }

  close(): void {
    this.#histories.clear();
    this.#unused.clear();
    this.#stopSweep();
  }

  /** The live history of a channel, or a new one (new epoch) when it had none or it expired. */
  #open(channel: string, options: HistoryOptions): History {
    const now = this.#clock.now();
    let history = this.#histories.get(channel);
    if (history && (history.expiresAt <= now || history.size !== options.size)) history = undefined;
    if (!history) {
      history = new History(newEpoch(now), options.size);
      history.expiresAt = now + options.ttl * 1000;
      this.#histories.set(channel, history);
      this.#unused.delete(channel);
      this.#unused.add(channel);
      // Subscribes to ever new names must not grow the process: past the bound the oldest unused epoch goes (a
      // client told "offset 0" of it then gets recovered: false, never a wrong replay).
      if (this.#unused.size > MAX_UNUSED_HISTORIES) {
        const [oldest] = this.#unused;
        this.#unused.delete(oldest);
        this.#histories.delete(oldest);
      }
      this.#startSweep(options.ttl);
    }
    return history;
  }

  #startSweep(ttl: number): void {
    if (this.#sweep !== undefined) return;
    const every = Math.min(60, Math.max(1, ttl)) * 1000;
    const run = () => {
      const now = this.#clock.now();
      for (const [channel, history] of this.#histories) {
        if (history.expiresAt > now) continue;
        this.#histories.delete(channel);
        this.#unused.delete(channel);
      }
      this.#sweep = this.#histories.size > 0 ? this.#clock.setTimeout(run, every) : undefined;
    };
    this.#sweep = this.#clock.setTimeout(run, every);
  }

  #stopSweep(): void {
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }
}
