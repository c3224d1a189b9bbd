/**
 * What the client does after the connection closed with a code:
 * - `backoff`: reconnect after the usual exponential backoff;
 * - `spread`: reconnect after a random wait anywhere up to `maxDelay` (the server is overloaded or shedding
 *   clients: spread the comeback), reported as an error;
 * - `max`: the client sent something the server refuses; reconnecting at once would repeat it: wait `maxDelay`,
 *   report an error;
 * - `stay`: do not reconnect until the application calls `connect()`; reported as an error.
 */
export type CloseAction = "backoff" | "spread" | "max" | "stay";

/** The action and a human description for one close code. */
export interface ClosePolicy {
  readonly action: CloseAction;
  readonly description: string;
}

/** The close codes Shoal sends or a client observes (docs/protocol.md §12.6), and what the client does. */
const POLICIES: Readonly<Record<number, ClosePolicy>> = {
  1000: { action: "backoff", description: "closed by the server: shutdown, keep-alive timeout or internal error" },
  1001: { action: "backoff", description: "going away: server shutdown or keep-alive timeout" },
  1005: { action: "backoff", description: "closed without a status code" },
  1006: { action: "backoff", description: "connection lost without a close frame" },
  1007: { action: "max", description: "the server refused a frame that was not valid UTF-8" },
  1008: { action: "max", description: "policy violation: too many events or bytes waiting on the server" },
  1009: { action: "max", description: "a frame was larger than the server's maximum message size" },
  1011: { action: "backoff", description: "internal server error" },
  1012: { action: "backoff", description: "the server is restarting" },
  1013: { action: "spread", description: "try again later: slow consumer or too many connections" },
  1014: { action: "backoff", description: "bad gateway" },
  4000: { action: "stay", description: "disconnected by an administrator" },
};

/** The policy for `code`; unknown codes reconnect with backoff. */
export function closePolicy(code: number): ClosePolicy {
  return POLICIES[code] ?? { action: "backoff", description: `closed with code ${code}` };
}
