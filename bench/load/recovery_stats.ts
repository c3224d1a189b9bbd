import { LatencyHistogram } from "./histogram.ts";

/**
 * A worker's counters for S6 (history and recovery), shared by its recovering connections. Holes are counted at
 * the end from each connection's own ledger of offsets (`OffsetLedger`); everything else is counted as it happens.
 */
export class RecoveryStats {
  duplicates = 0;
  outOfOrder = 0;
  foreign = 0;
  drops = 0;
  recovered = 0;
  notRecovered = 0;
  unrecoverable = 0;
  insufficientState = 0;
  reconnectFailures = 0;
  reconnects = 0;
  recoveringSubscribes = 0;
  replayed = 0;
  /** Performance time of the last delivery. */
  lastArrival = 0;
  readonly recoveryLatency = new LatencyHistogram();
  readonly okLatency = new LatencyHistogram();
  readonly handshakeLatency = new LatencyHistogram();
  readonly liveLatency = new LatencyHistogram();
  readonly closes: Record<string, number> = {};

  closed(code: number): void {
    this.closes[code] = (this.closes[code] ?? 0) + 1;
  }
}

/** One client's offsets of a window (see `OffsetLedger.count`). */
export interface OffsetCount {
  readonly expected: number;
  readonly delivered: number;
  readonly holes: number;
  readonly tail: number;
}

/**
 * The offsets one client received, from `base` (the first one it must get) on: one byte per offset, so a hole (never
 * received), a duplicate (received again) and an out-of-order arrival are told apart exactly.
 */
export class OffsetLedger {
  readonly #base: number;
  #seen = new Uint8Array(1024);
  /** The highest offset received, or `base − 1`. */
  #highest: number;

  constructor(base: number) {
    this.#base = base;
    this.#highest = base - 1;
  }

  get highest(): number {
    return this.#highest;
  }

  /** Record `offset`; says what it was. */
  record(offset: number): "new" | "duplicate" | "late" | "foreign" {
    if (!(offset >= this.#base)) return "foreign";
    const index = offset - this.#base;
    if (index >= this.#seen.length) {
      let size = this.#seen.length;
      while (size <= index) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.#seen);
      this.#seen = grown;
    }
    if (this.#seen[index] === 1) return "duplicate";
    this.#seen[index] = 1;
    if (offset < this.#highest) return "late";
    this.#highest = offset;
    return "new";
  }

  /**
   * Offsets `first` to `last` (clamped to `base`): how many there are, how many were received at least once, and
   * of the others how many lie below the highest offset received (holes: a later one came, this one never did)
   * rather than above it (still on their way when counting stopped).
   */
  count(first: number, last: number): OffsetCount {
    const from = Math.max(first, this.#base);
    let delivered = 0;
    let holes = 0;
    for (let offset = from; offset <= last; offset++) {
      const index = offset - this.#base;
      if (index < this.#seen.length && this.#seen[index] === 1) delivered++;
      else if (offset < this.#highest) holes++;
    }
    const expected = Math.max(0, last - from + 1);
    return { expected, delivered, holes, tail: expected - delivered - holes };
  }
}
