import type { HistogramSnapshot } from "./histogram.ts";

/**
 * The line protocol between the runner and a load-generator worker (`client.ts`): one JSON object per line,
 * commands on the worker's stdin, reports on its stdout.
 */

/** How the worker's clients talk to the server: Shoal's JSON events, or Socket.IO 4 (engine.io 4 over WebSocket). */
export type WireProtocol = "shoal" | "socketio";

/** The payload `data` of every benchmark message. */
export interface BenchData {
  /** Sequence number within the phase, per subscription, from 1. */
  readonly seq: number;
  /** Publish time, ms since the epoch (`performance.timeOrigin + performance.now()` of the publisher). */
  readonly t: number;
  /** Phase id: messages of another phase are ignored. */
  readonly p: number;
  /** Optional padding that makes messages bigger. */
  readonly pad?: string;
}

export type WorkerCommand =
  /** Open one connection per entry of `subscriptions` and subscribe it to those names; answers `connected`. */
  | {
    readonly cmd: "connect";
    readonly protocol: WireProtocol;
    readonly subscriptions: readonly (readonly string[])[];
    /** Connections being set up at once. */
    readonly concurrency: number;
    readonly timeoutMs: number;
  }
  /** Count deliveries of phase `id` from now on (answers `begun`); with `track`, report `progress` (closed loop). */
  | { readonly cmd: "phase"; readonly id: number; readonly track: boolean }
  /**
   * The publisher is done with phase `id` and sent `published[name]` messages per subscription: wait until they
   * arrived (or nothing came for `quietMs`, or `maxWaitMs` passed) and answer `phase`.
   */
  | {
    readonly cmd: "end";
    readonly id: number;
    readonly published: Readonly<Record<string, number>>;
    readonly quietMs: number;
    readonly maxWaitMs: number;
  }
  /** Stop reading on every connection; answers `stalled`. */
  | { readonly cmd: "stall" }
  /** Read again, and wait up to `timeoutMs` for each connection to be closed by the server; answers `resumed`. */
  | { readonly cmd: "resume"; readonly timeoutMs: number }
  /** Close every connection and exit. */
  | { readonly cmd: "close" };

export type WorkerReport =
  | { readonly type: "started"; readonly pid: number }
  | {
    readonly type: "connected";
    readonly ok: number;
    readonly failed: number;
    readonly ms: number;
    readonly errors: readonly string[];
  }
  | { readonly type: "begun"; readonly phase: number }
  | { readonly type: "progress"; readonly phase: number; readonly complete: number }
  | { readonly type: "phase"; readonly phase: number } & PhaseCounts
  | { readonly type: "stalled"; readonly ports: readonly number[] }
  | { readonly type: "resumed"; readonly closes: readonly ResumedConnection[] }
  | { readonly type: "closed"; readonly unexpectedCloses: Readonly<Record<string, number>> }
  | { readonly type: "error"; readonly message: string };

/** What a worker counted in one phase. */
export interface PhaseCounts {
  /** Messages received once (duplicates excluded). */
  readonly deliveries: number;
  /** Messages received again, or out of order. */
  readonly duplicates: number;
  /** Messages published to a subscription but never received, summed over its subscribers. */
  readonly lost: number;
  /** Messages of another phase, or for a subscription the client does not hold. */
  readonly foreign: number;
  /** Connections the server closed during the phase, by close code. */
  readonly closes: Readonly<Record<string, number>>;
  readonly latency: HistogramSnapshot;
  /** How long the worker waited after `end` for the last messages. */
  readonly settleMs: number;
}

/** A stalled connection after it read again: the close code it saw, or null if still open. */
export interface ResumedConnection {
  readonly port: number;
  readonly code: number | null;
  /** Bytes it read after resuming (what the kernel and the server had buffered for it). */
  readonly bytes: number;
}
