import type { MessageOptions } from "../protocol/broker_message.ts";
import { pyEquals } from "../protocol/pyvalues.ts";
import type { Clock } from "./clock.ts";

/**
 * The delivery policy of one subscription, in two parts: the filter below (which messages are for it at all),
 * then `Delivery`'s order and throttle state (which of those go out now).
 */

/** Where a subscription's own value of a filter field comes from (decision 4: extra, authorizer, auth fields). */
export interface FilterValues {
  fieldValue(field: string): unknown;
}

/**
 * Filter fields (docs/protocol.md §10.5): each filter field present in a message must equal (as Python's `==`)
 * the subscription's own value, a missing one counting as null. Fields the message lacks do not filter.
 */
export function passesFilter(
  filterFields: readonly string[],
  fields: Readonly<Record<string, unknown>>,
  own: FilterValues,
): boolean {
  for (const f of filterFields) {
    if (!Object.hasOwn(fields, f)) continue;
    if (!pyEquals(own.fieldValue(f) ?? null, fields[f])) return false;
  }
  return true;
}

/** Why a message was not delivered now: for logs and the `filtered` metric. */
export type Verdict = "deliver" | "order" | "throttle";

interface ThrottleState {
  lastSent: number;
  pending: unknown;
  hasPending: boolean;
  timer: unknown;
}

/**
 * One subscription's out-of-order and throttle state (docs/protocol.md §10.6-§10.7). Order: per `order_key`, only a value
 * strictly greater than the last accepted one passes. Throttle: per `throttle_key`, the first message goes out at
 * once; inside the window the latest message waits and is sent when the window closes.
 */
export class Delivery<M> {
  readonly #clock: Clock;
  readonly #sendLater: (message: M) => void;
  // Created on first use: most subscriptions never see an order or a throttle, and there may be many thousands.
  #orders: Map<string, number> | undefined;
  #throttles: Map<string, ThrottleState> | undefined;
  #closed = false;

  /** `sendLater` sends a message held by the throttle when its window ends. */
  constructor(clock: Clock, sendLater: (message: M) => void) {
    this.#clock = clock;
    this.#sendLater = sendLater;
  }

  /** Decide about one message; `"deliver"` means send it now. Order state advances even if the throttle holds it. */
  offer(message: M, options: MessageOptions): Verdict {
    if (this.#closed) return "throttle";
    if (options.order !== undefined) {
      this.#orders ??= new Map();
      const last = this.#orders.get(options.orderKey);
      if (last !== undefined && options.order <= last) return "order";
      this.#orders.set(options.orderKey, options.order);
    }
    if (options.throttle !== undefined) {
      const key = options.throttleKey;
      const now = this.#clock.now();
      this.#throttles ??= new Map();
      const state = this.#throttles.get(key);
      if (state) {
        if (state.timer !== undefined) {
          state.pending = message;
          state.hasPending = true;
          return "throttle";
        }
        const windowMs = options.throttle * 1000;
        if (now - state.lastSent < windowMs) {
          state.pending = message;
          state.hasPending = true;
          state.timer = this.#clock.setTimeout(() => this.#flush(key), state.lastSent + windowMs - now);
          return "throttle";
        }
      }
      this.#throttles.set(key, { lastSent: now, pending: undefined, hasPending: false, timer: undefined });
    }
    return "deliver";
  }

  #flush(key: string): void {
    const state = this.#throttles?.get(key);
    if (!state || this.#closed) return;
    state.timer = undefined;
    if (!state.hasPending) return;
    const message = state.pending as M;
    state.pending = undefined;
    state.hasPending = false;
    state.lastSent = this.#clock.now();
    this.#sendLater(message);
  }

  /** Cancel every held message and timer; later offers are refused. */
  close(): void {
    this.#closed = true;
    for (const state of this.#throttles?.values() ?? []) {
      if (state.timer !== undefined) this.#clock.clearTimeout(state.timer);
    }
    this.#throttles = this.#orders = undefined;
  }
}
