import { getLogger } from "@logtape/logtape";

const log = getLogger(["shoal", "server"]);

/** A connection whose send buffer counts against the budget. */
export interface Budgeted {
  /** Bytes queued for the client now. */
  measure(): number;
  /** Chosen as one of the furthest behind while the node is over budget: close it. */
  onOverBudget(): void;
}

/** How often the buffers on record are measured again, milliseconds. */
const REFRESH_MS = 250;

/**
 * `limits.maxBufferedBytesTotal`: one node's budget for bytes queued to all its clients. Connections report their
 * send buffer whenever they measure it (every few sends, or on the sweeper's round); only non-empty buffers are on
 * record, and those are measured again every `REFRESH_MS` until they drain, so the total stays current without
 * walking every connection. Past the budget, the connections furthest behind are closed until it holds again.
 * One timer, running only while some buffer is non-empty.
 */
export class BufferBudget {
  readonly #limit: number;
  readonly #sizes = new Map<Budgeted, number>();
  #total = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Bytes queued on record, over all connections. */
  get total(): number {
    return this.#total;
  }

  /** A connection measured its send buffer. */
  record(member: Budgeted, bytes: number): void {
    this.#set(member, bytes);
    if (this.#total > this.#limit) this.#enforce();
  }

  /** A connection is gone. */
  remove(member: Budgeted): void {
    this.#set(member, 0);
  }

  #set(member: Budgeted, bytes: number): void {
    const old = this.#sizes.get(member) ?? 0;
    if (bytes > 0) this.#sizes.set(member, bytes);
    else this.#sizes.delete(member);
    this.#total += bytes - old;
    if (this.#sizes.size > 0) this.#timer ??= setInterval(() => this.#refresh(), REFRESH_MS);
    else if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #refresh(): void {
    for (const member of [...this.#sizes.keys()]) {
      try {
        this.#set(member, member.measure());
      } catch {
        this.#set(member, 0); // the socket is gone
      }
    }
    if (this.#total > this.#limit) this.#enforce();
  }

  /** Close the connections furthest behind until the total is within the budget. */
  #enforce(): void {
    const over = this.#total;
    const members = [...this.#sizes].sort((a, b) => b[1] - a[1]);
    let closed = 0;
    for (const [member] of members) {
      if (this.#total <= this.#limit) break;
      this.#set(member, 0);
      closed++;
      try {
        member.onOverBudget();
      } catch (error) {
        log.debug("closing an over-budget connection failed", { error: String(error) });
      }
    }
    log.warn("outgoing buffers over budget; closed the furthest behind", { total: over, limit: this.#limit, closed });
  }
}
