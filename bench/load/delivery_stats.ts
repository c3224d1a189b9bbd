import { LatencyHistogram } from "./histogram.ts";
import type { PhaseCounts } from "./messages.ts";

/** One client's view of one subscription in the current phase. */
export interface TopicState {
  phase: number;
  /** Highest sequence number received. */
  last: number;
  /** Distinct messages received. */
  count: number;
}

/**
 * A worker's counters for the current phase: latency of every delivery, duplicates, messages of other phases,
 * and (when tracking) `complete`, the highest sequence number every tracked subscription has reached, which
 * drives closed-loop publishing. Loss is computed at the end against what the publisher says it sent.
 */
export class DeliveryStats {
  #phase = 0;
  #track = false;
  #latency = new LatencyHistogram();
  #deliveries = 0;
  #duplicates = 0;
  #foreign = 0;
  #closes: Record<string, number> = {};
  #lastArrival = 0;
  /** With tracking: `#reached[s]` = subscriptions whose `last` is at least s. */
  #reached = new Int32Array(1 << 12);
  #tracked = 0;
  #complete = 0;

  get phase(): number {
    return this.#phase;
  }

  /** The highest sequence number that every tracked subscription has received (or skipped past). */
  get complete(): number {
    return this.#complete;
  }

  get deliveries(): number {
    return this.#deliveries;
  }

  /** Performance time of the last delivery. */
  get lastArrival(): number {
    return this.#lastArrival;
  }

  /** Start phase `id`; `tracked` subscriptions take part in `complete` when `track` is set. */
  begin(id: number, track: boolean, tracked: number): void {
    this.#phase = id;
    this.#track = track;
    this.#latency = new LatencyHistogram();
    this.#deliveries = 0;
    this.#duplicates = 0;
    this.#foreign = 0;
    this.#closes = {};
    this.#reached.fill(0);
    this.#tracked = tracked;
    this.#complete = 0;
  }

  /** One message for `state` (undefined: a subscription the client does not hold). */
  delivery(state: TopicState | undefined, seq: number, sentAt: number, phase: number): void {
    const now = performance.now();
    this.#lastArrival = now;
    if (phase !== this.#phase || state === undefined || !(seq > 0)) {
      this.#foreign++;
      return;
    }
    if (state.phase !== phase) {
      state.phase = phase;
      state.last = 0;
      state.count = 0;
    }
    this.#latency.record(performance.timeOrigin + now - sentAt);
    if (seq <= state.last) {
      this.#duplicates++;
      return;
    }
    this.#deliveries++;
    state.count++;
    if (this.#track) this.#advance(state.last, seq);
    state.last = seq;
  }

  /** A connection was closed by the server (or dropped). */
  closed(code: number): void {
    this.#closes[code] = (this.#closes[code] ?? 0) + 1;
  }

  /** The counts of the phase, with `lost` computed from what the publisher sent to each subscription. */
  counts(lost: number, settleMs: number): PhaseCounts {
    return {
      deliveries: this.#deliveries,
      duplicates: this.#duplicates,
      lost,
      foreign: this.#foreign,
      closes: { ...this.#closes },
      latency: this.#latency.toJSON(),
      settleMs,
    };
  }

  #advance(from: number, to: number): void {
    if (to >= this.#reached.length) {
      let size = this.#reached.length;
      while (size <= to) size *= 2;
      const grown = new Int32Array(size);
      grown.set(this.#reached);
      this.#reached = grown;
    }
    for (let s = from + 1; s <= to; s++) this.#reached[s]++;
    while (this.#complete + 1 < this.#reached.length && this.#reached[this.#complete + 1] >= this.#tracked) {
      this.#complete++;
    }
  }
}
