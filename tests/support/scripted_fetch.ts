import type { Gate } from "./fake_clock.ts";

/** One scripted answer: a JSON body (status 200), or a full response description. */
export type Reply =
  | Record<string, unknown>
  | { readonly http: number; readonly body?: string; readonly contentType?: string; readonly headers?: Record<string, string> }
  | { readonly fail: "network" }
  | { readonly hang: true }
  | Gated
  /** Answers after `ms` of real time: work the core is busy with, not held by the test. */
  | { readonly delay: number; readonly reply: Reply };

export interface Call {
  readonly url: string;
  readonly body: unknown;
}

type Gated = { readonly after: Gate; readonly reply: Reply };

function isGated(reply: Reply): reply is Gated {
  return "after" in reply && "reply" in reply && typeof (reply.after as Gate | undefined)?.open === "function";
}

/** A call held by its script: behind a gate not yet opened, or hanging until it is aborted. */
interface Held {
  readonly gate?: Gate;
  readonly signal?: AbortSignal | null;
}

/**
 * A fake `fetch` for the service client: each URL answers from its queue of replies (the last one repeats),
 * and every request body is recorded.
 */
export class ScriptedFetch {
  readonly calls: Call[] = [];
  readonly #replies = new Map<string, Reply[]>();
  readonly #held = new Set<Held>();
  #waiters: (() => void)[] = [];

  /**
   * Calls that cannot go on until the test acts: behind a gate it has not opened, or hanging and not aborted.
   * Each is awaited by exactly one piece of the core's work, which is therefore not idle but waiting on the test.
   */
  get parked(): number {
    let n = 0;
    for (const held of this.#held) {
      if (held.gate ? !held.gate.opened : !held.signal?.aborted) n++;
    }
    return n;
  }

  /** Resolves at the next change of `parked` made by a call (a call parks, or an abort frees it). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #hold(held: Held): () => void {
    this.#held.add(held);
    this.#notify();
    held.signal?.addEventListener("abort", () => this.#notify(), { once: true });
    return () => {
      this.#held.delete(held);
      this.#notify();
    };
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Answer `url` with these replies in turn; the last one repeats. */
  on(url: string, ...replies: Reply[]): this {
    this.#replies.set(url, replies);
    return this;
  }

  /** Bodies posted to one URL. */
  bodies(url: string): unknown[] {
    return this.calls.filter((c) => c.url === url).map((c) => c.body);
  }

  readonly fetch = (async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    this.calls.push({ url, body: JSON.parse(String(init?.body ?? "null")) });
    const queue = this.#replies.get(url);
    if (!queue || queue.length === 0) throw new TypeError(`fetch failed: nothing scripted for ${url}`);
    let reply = queue.length > 1 ? queue.shift()! : queue[0];
    if ("delay" in reply && typeof reply.delay === "number" && "reply" in reply) {
      const delayed = reply as { readonly delay: number; readonly reply: Reply };
      await new Promise((resolve) => setTimeout(resolve, delayed.delay));
      reply = delayed.reply;
    }
    while (isGated(reply)) {
      // As a real fetch does, an abort ends the wait with the signal's reason.
      const signal = init?.signal;
      signal?.throwIfAborted();
      const release = this.#hold({ gate: reply.after, signal });
      try {
        await Promise.race([
          reply.after.promise,
          new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true })),
        ]);
      } finally {
        release();
      }
      reply = reply.reply;
    }
    if ("fail" in reply && reply.fail === "network") throw new TypeError("fetch failed: connection refused");
    if ("hang" in reply && reply.hang === true) {
      const signal = init?.signal;
      const release = this.#hold({ signal });
      try {
        return await new Promise<Response>((_, reject) => {
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      } finally {
        release();
      }
    }
    if ("http" in reply && typeof reply.http === "number") {
      const r = reply as { http: number; body?: string; contentType?: string; headers?: Record<string, string> };
      return new Response(r.body ?? "", {
        status: r.http,
        headers: { "content-type": r.contentType ?? "application/json", ...r.headers },
      });
    }
    return new Response(JSON.stringify(reply), { status: 200, headers: { "content-type": "application/json" } });
  }) as typeof fetch;
}
