import { getLogger } from "@logtape/logtape";
import { clip } from "../log.ts";
import type { BrokerMessage } from "./broker.ts";

const log = getLogger(["shoal", "broker"]);

/**
 * A broker's receive queue: messages that arrived together (one network read, one publish batch) wait here
 * and are handed on in order on a later microtask, each with the number still waiting behind it
 * (SocketShark's `queue_size`). Never re-enters the caller, and never throws: this runs in a microtask, where an
 * exception would end the process, so a message whose delivery fails is logged and the rest go on.
 */
export class ReceiveQueue {
  readonly #deliver: (message: BrokerMessage) => void;
  readonly #items: { channel: string; payload: string }[] = [];
  #head = 0;
  #scheduled = false;
  #drained: (() => void)[] = [];

  constructor(deliver: (message: BrokerMessage) => void) {
    this.#deliver = deliver;
  }

  push(channel: string, payload: string): void {
    this.#items.push({ channel, payload });
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#drain());
  }

  /** Resolves once what is queued now has been handed on (at once if nothing is). */
  drained(): Promise<void> {
    if (!this.#scheduled) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  /** Forget what is waiting (on close). */
  clear(): void {
    this.#items.length = 0;
    this.#head = 0;
  }

  #drain(): void {
    this.#scheduled = false;
    const receivedAt = Date.now();
    while (this.#head < this.#items.length) {
      const queueSize = this.#items.length - this.#head;
      const { channel, payload } = this.#items[this.#head++];
      try {
        this.#deliver({ channel, payload, receivedAt, queueSize });
      } catch (error) {
        log.error("delivery failed; message dropped", { channel, error, payload: clip(payload) });
      }
    }
    this.clear();
    const drained = this.#drained;
    this.#drained = [];
    for (const resolve of drained) resolve();
  }
}
