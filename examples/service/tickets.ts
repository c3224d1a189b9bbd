/** Who a connection is: the auth fields Shoal keeps for the session (`authFields` in shoal.config.ts). */
export interface Identity {
  readonly user_id: string;
  readonly session_id: string;
}

/**
 * Single-use tickets. The page asks for one before each (re)connect and sends it in `auth`; Shoal posts it to the
 * ticket validation callback, which redeems it: once, and only within `ttl` seconds.
 */
export class TicketBook {
  readonly #tickets = new Map<string, { readonly userId: string; readonly expires: number }>();
  readonly #ttlMs: number;

  constructor(options: { ttl?: number } = {}) {
    this.#ttlMs = (options.ttl ?? 30) * 1000;
  }

  /** A new ticket for `userId`. */
  issue(userId: string): string {
    const now = Date.now();
    for (const [ticket, { expires }] of this.#tickets) if (expires < now) this.#tickets.delete(ticket);
    const ticket = crypto.randomUUID();
    this.#tickets.set(ticket, { userId, expires: now + this.#ttlMs });
    return ticket;
  }

  /** The identity behind `ticket`, the first time only; undefined when unknown, used or expired. */
  redeem(ticket: string): Identity | undefined {
    const entry = this.#tickets.get(ticket);
    this.#tickets.delete(ticket);
    if (!entry || entry.expires < Date.now()) return undefined;
    // Each ticket opens one connection: its session id names that connection (the user topic's filter field).
    return { user_id: entry.userId, session_id: crypto.randomUUID() };
  }
}
