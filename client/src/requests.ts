import type { Frame } from "./types.ts";

/**
 * One request waiting for its reply. Shoal processes a connection's events one at a time and replies in request
 * order (docs/protocol.md §2.5), but sends no reply to some (`message` without an answering `on_message`, §6.2),
 * and replies carry no request id: a reply is matched by its `event` and `subscription`, and every request before
 * the one it matches was processed without a reply.
 */
export interface PendingRequest {
  /** The request's event name, as its reply will carry it. */
  readonly event: string;
  /** Its `subscription`, "" when it has none (as its reply then has none). */
  readonly name: string;
  /** Whether a later request must follow it so that a reply settles it (a `message` sent without `expectReply`). */
  readonly wantsSync: boolean;
  /** Its reply arrived. */
  reply(frame: Frame): void;
  /** A reply to a later request arrived first: this one was processed without a reply. */
  noReply(): void;
  /** The connection ended before the reply. */
  lost(): void;
}

/** The requests of one connection whose replies are due, oldest first. */
export class RequestQueue {
  #queue: PendingRequest[] = [];

  /** Requests waiting. */
  get size(): number {
    return this.#queue.length;
  }

  /** A request was sent. */
  push(request: PendingRequest): void {
    this.#queue.push(request);
  }

  /** Whether the newest request needs a sync event after it to be settled. */
  get needsSync(): boolean {
    return this.#queue.at(-1)?.wantsSync ?? false;
  }

  /**
   * Whether a reply to a new request `(event, name)` could be taken for the reply of an earlier one: an earlier
   * request with the same event and name that may go unanswered, with nothing that is always answered after it.
   * A sync event in between keeps them apart.
   */
  ambiguous(event: string, name: string): boolean {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const request = this.#queue[i];
      if (request.event === event && request.name === name) return true;
      if (!request.wantsSync) return false;
    }
    return false;
  }

  /** Settle the request `frame` answers and every earlier one (unanswered); false when it answers nothing. */
  settle(frame: Frame): boolean {
    const event = frame.event;
    const name = typeof frame.subscription === "string" ? frame.subscription : "";
    const index = this.#queue.findIndex((r) => r.event === event && r.name === name);
    if (index < 0) return false;
    const done = this.#queue.splice(0, index + 1);
    const matched = done.pop()!;
    for (const request of done) request.noReply();
    matched.reply(frame);
    return true;
  }

  /** The connection ended: every request waiting is lost. */
  lose(): void {
    const lost = this.#queue;
    this.#queue = [];
    for (const request of lost) request.lost();
  }
}
