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
  /**
   * S6: open `count` connections that subscribe to the history subscription `topic` and keep their place in it
   * (see `RecoveringSubscriber`); answers `connected`.
   */
  | {
    readonly cmd: "recoverers";
    readonly topic: string;
    readonly count: number;
    readonly concurrency: number;
    readonly timeoutMs: number;
  }
  /**
   * Drop `share` of the recovering connections (those that are live) without a closing handshake; each comes back
   * `offlineMs` later and subscribes with `recover` from the last offset it received. Answers `dropped`.
   */
  | { readonly cmd: "drop"; readonly share: number; readonly offlineMs: number }
  /**
   * The publisher appended offsets `first` to `last`: wait until every recovering connection has `last` (or nothing
   * came for `quietMs`, or `maxWaitMs` passed) and answer `recovery`.
   */
  | {
    readonly cmd: "recoveryEnd";
    readonly first: number;
    readonly last: number;
    readonly quietMs: number;
    readonly maxWaitMs: number;
  }
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
  | { readonly type: "dropped"; readonly count: number; readonly skipped: number }
  | { readonly type: "recovery" } & RecoveryCounts
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

/** What a worker's recovering connections counted over an S6 window (offsets `first` to `last`). */
export interface RecoveryCounts {
  readonly clients: number;
  /** Client × offset pairs the window should deliver: clients × (last − first + 1). */
  readonly expected: number;
  /** Pairs received at least once. */
  readonly delivered: number;
  /** Pairs never received although the client received a later offset: lost. */
  readonly holes: number;
  /** Pairs past the highest offset the client received: still on their way when the worker stopped waiting. */
  readonly undelivered: number;
  /** Offsets a client received again. */
  readonly duplicates: number;
  /** Offsets received (for the first time) after a higher one. */
  readonly outOfOrder: number;
  /** Deliveries with another epoch than the client's, or before its first offset: not counted above. */
  readonly foreign: number;
  /** Connections dropped on purpose, and what their recovering subscribe answered. */
  readonly drops: number;
  readonly recovered: number;
  readonly notRecovered: number;
  /** Offsets between a `recover` position and the OK's offset when the OK said `recovered: false`. */
  readonly unrecoverable: number;
  /** `Insufficient state.` notices (each followed by a subscribe with `recover` on the same connection). */
  readonly insufficientState: number;
  /** Reconnects or recovering subscribes that failed (refused, timed out, an error answer); each is retried. */
  readonly reconnectFailures: number;
  /** New connections opened after a drop (or a failure), and recovering subscribes sent. */
  readonly reconnects: number;
  readonly recoveringSubscribes: number;
  /** Messages without `received_at` between a recovered OK and the first live message: the replay. */
  readonly replayed: number;
  /** Recoveries that had seen no live message when the window ended. */
  readonly awaitingLive: number;
  /** Clients that had not received `last` when the worker stopped waiting. */
  readonly behind: number;
  /** Reconnect (new TCP connection) → the first live message after the replay, recovered subscribes only. */
  readonly recoveryLatency: HistogramSnapshot;
  /** Reconnect → the recovering subscribe's OK. */
  readonly okLatency: HistogramSnapshot;
  /** Reconnect → the WebSocket handshake done (before the subscribe is sent). */
  readonly handshakeLatency: HistogramSnapshot;
  /** Publish → client of the live messages (as in the other scenarios). */
  readonly liveLatency: HistogramSnapshot;
  /** Connections the server closed (not the ones dropped on purpose), by close code. */
  readonly closes: Readonly<Record<string, number>>;
  readonly settleMs: number;
}
