/** One scripted answer: a JSON body (status 200), or a full response description. */
export type Reply =
  | Record<string, unknown>
  | { readonly http: number; readonly body?: string; readonly contentType?: string; readonly headers?: Record<string, string> }
  | { readonly fail: "network" }
  | { readonly hang: true }
  | { readonly after: Promise<unknown>; readonly reply: Reply };

export interface Call {
  readonly url: string;
  readonly body: unknown;
}

/**
 * A fake `fetch` for the service client: each URL answers from its queue of replies (the last one repeats),
 * and every request body is recorded.
 */
export class ScriptedFetch {
  readonly calls: Call[] = [];
  readonly #replies = new Map<string, Reply[]>();

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
    while ("after" in reply && reply.after instanceof Promise) {
      // As a real fetch does, an abort ends the wait with the signal's reason.
      const signal = init?.signal;
      signal?.throwIfAborted();
      await Promise.race([
        reply.after,
        new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true })),
      ]);
      reply = reply.reply as Reply;
    }
    if ("fail" in reply && reply.fail === "network") throw new TypeError("fetch failed: connection refused");
    if ("hang" in reply && reply.hang === true) {
      return await new Promise<Response>((_, reject) => {
        const signal = init?.signal;
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
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
