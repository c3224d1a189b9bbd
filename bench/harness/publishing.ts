import type { BenchData } from "../load/messages.ts";
import type { Publisher } from "../peers/publish.ts";

/** Publishes beyond this many unanswered are held back: the publisher itself is then the limit (see `rate`). */
const MAX_IN_FLIGHT = 5000;

/** What one phase published. */
export interface PublishResult {
  /** Messages per subscription name. */
  readonly published: Record<string, number>;
  readonly sent: number;
  readonly elapsedMs: number;
  /** Messages per second actually sent. */
  readonly rate: number;
  readonly failures: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Drives a `Publisher` for the benchmark phases: every message carries `{seq, t, p}` (see `BenchData`), with
 * `seq` counted per subscription within the phase and `t` the publish time on the shared clock.
 */
export class PhasePublisher {
  readonly #publisher: Publisher;
  #inFlight = 0;
  #failures = 0;
  #lastError: unknown;
  #drained: (() => void) | undefined;

  constructor(publisher: Publisher) {
    this.#publisher = publisher;
  }

  /** Publish at `rate` messages per second for `durationMs`; message i goes to `topicAt(i)`. */
  async openLoop(options: {
    readonly phase: number;
    readonly rate: number;
    readonly durationMs: number;
    readonly topicAt: (i: number) => string;
    readonly pad?: string;
  }): Promise<PublishResult> {
    const published: Record<string, number> = {};
    const failuresBefore = this.#failures;
    const start = performance.now();
    let sent = 0;
    for (;;) {
      const elapsed = performance.now() - start;
      if (elapsed >= options.durationMs) break;
      const due = Math.min(
        Math.floor((elapsed * options.rate) / 1000) + 1,
        Math.ceil((options.durationMs * options.rate) / 1000),
      );
      while (sent < due && this.#inFlight < MAX_IN_FLIGHT) {
        this.#send(options.topicAt(sent), published, options.phase, options.pad);
        sent++;
      }
      await sleep(1);
    }
    const elapsedMs = performance.now() - start;
    await this.drain(10_000);
    return { published, sent, elapsedMs, rate: (sent * 1000) / elapsedMs, failures: this.#failures - failuresBefore };
  }

  /**
   * Closed loop on one subscription: keep `window` messages beyond `complete()` (the highest sequence number
   * every subscriber has) in flight for `durationMs`, publishing as fast as deliveries keep up. `progress()`
   * resolves on the next progress report. A window that does not move for 2 s (lost messages) is reopened.
   */
  async closedLoop(options: {
    readonly phase: number;
    readonly topic: string;
    readonly window: number;
    readonly durationMs: number;
    readonly complete: () => number;
    readonly progress: () => Promise<void>;
  }): Promise<PublishResult & { readonly completed: number; readonly reopened: number }> {
    const published: Record<string, number> = {};
    const failuresBefore = this.#failures;
    const start = performance.now();
    let sent = 0;
    let floor = 0;
    let reopened = 0;
    let lastComplete = 0;
    let movedAt = start;
    for (;;) {
      const now = performance.now();
      if (now - start >= options.durationMs) break;
      const complete = options.complete();
      if (complete !== lastComplete) {
        lastComplete = complete;
        movedAt = now;
      } else if (now - movedAt > 2000 && sent > floor) {
        floor = sent;
        movedAt = now;
        reopened++;
      }
      while (sent - Math.max(complete, floor) < options.window && this.#inFlight < MAX_IN_FLIGHT) {
        this.#send(options.topic, published, options.phase);
        sent++;
      }
      await Promise.race([options.progress(), sleep(5)]);
    }
    const elapsedMs = performance.now() - start;
    const completed = options.complete();
    await this.drain(10_000);
    return {
      published,
      sent,
      elapsedMs,
      rate: (sent * 1000) / elapsedMs,
      failures: this.#failures - failuresBefore,
      completed,
      reopened,
    };
  }

  /** Wait until every publish was answered by Redis (or `timeoutMs` passed). */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#inFlight === 0) return;
    await Promise.race([new Promise<void>((resolve) => (this.#drained = resolve)), sleep(timeoutMs)]);
    this.#drained = undefined;
  }

  /** Wait for what is in flight, then close the publisher's connection. */
  async close(): Promise<void> {
    await this.drain(5000);
    await this.#publisher.close();
  }

  /** The last publish error, if any failed. */
  get lastError(): unknown {
    return this.#lastError;
  }

  #send(topic: string, published: Record<string, number>, phase: number, pad?: string): void {
    const seq = (published[topic] ?? 0) + 1;
    published[topic] = seq;
    const data: BenchData = pad === undefined
      ? { seq, t: performance.timeOrigin + performance.now(), p: phase }
      : { seq, t: performance.timeOrigin + performance.now(), p: phase, pad };
    this.#inFlight++;
    this.#publisher.publish(topic, data).then(
      () => this.#settled(),
      (error: unknown) => {
        this.#failures++;
        this.#lastError = error;
        this.#settled();
      },
    );
  }

  #settled(): void {
    if (--this.#inFlight === 0) this.#drained?.();
  }
}
