/**
 * A latency histogram with log-linear buckets (64 per power of two of microseconds, so about 1.5 % resolution)
 * from 1 µs to about 1 hour. Workers send `counts` to the runner, which merges them; no sample is kept.
 */
export class LatencyHistogram {
  static readonly #SUB_BUCKETS = 64;
  static readonly #SIZE = 64 * 32;
  readonly #counts: Float64Array;
  #total = 0;
  #max = 0;
  #sum = 0;

  constructor() {
    this.#counts = new Float64Array(LatencyHistogram.#SIZE);
  }

  /** Record one latency in milliseconds; negative values (clock skew between processes) count as 0. */
  record(ms: number): void {
    const us = ms > 0 ? ms * 1000 : 0;
    this.#counts[LatencyHistogram.#bucket(us)]++;
    this.#total++;
    this.#sum += ms;
    if (ms > this.#max) this.#max = ms;
  }

  get count(): number {
    return this.#total;
  }

  /** The latency at quantile `q` (0..1) in milliseconds, as the upper bound of its bucket; NaN when empty. */
  percentile(q: number): number {
    if (this.#total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.#total));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return Math.min(LatencyHistogram.#upper(i) / 1000, this.#max || Infinity);
    }
    return this.#max;
  }

  get max(): number {
    return this.#max;
  }

  get mean(): number {
    return this.#total === 0 ? NaN : this.#sum / this.#total;
  }

  /** Merge a snapshot from another histogram (`toJSON()` of it). */
  add(snapshot: HistogramSnapshot): void {
    for (let i = 0; i < snapshot.counts.length; i++) this.#counts[i] += snapshot.counts[i];
    this.#total += snapshot.total;
    this.#sum += snapshot.sum;
    if (snapshot.max > this.#max) this.#max = snapshot.max;
  }

  /** A compact snapshot: trailing empty buckets are cut. */
  toJSON(): HistogramSnapshot {
    let end = this.#counts.length;
    while (end > 0 && this.#counts[end - 1] === 0) end--;
    return { counts: Array.from(this.#counts.subarray(0, end)), total: this.#total, max: this.#max, sum: this.#sum };
  }

  static #bucket(us: number): number {
    const sub = LatencyHistogram.#SUB_BUCKETS;
    if (us < sub) return Math.floor(us);
    let exponent = Math.floor(Math.log2(us)) - 6; // so that us / 2^exponent lies in [64, 128)
    let mantissa = Math.floor(us / 2 ** exponent);
    if (mantissa >= 2 * sub) mantissa = Math.floor(us / 2 ** ++exponent); // log2 rounding at a power of two
    return Math.min(exponent * sub + mantissa, LatencyHistogram.#SIZE - 1);
  }

  /** The largest microsecond value that falls into bucket `i`. */
  static #upper(i: number): number {
    const sub = LatencyHistogram.#SUB_BUCKETS;
    if (i < 2 * sub) return i + 1;
    const exponent = Math.floor(i / sub) - 1;
    const mantissa = (i % sub) + sub;
    return (mantissa + 1) * 2 ** exponent;
  }
}

/** What a worker sends for one histogram. */
export interface HistogramSnapshot {
  readonly counts: readonly number[];
  readonly total: number;
  readonly max: number;
  readonly sum: number;
}
