/**
 * The core's work in flight: a session running its events or its teardown, a renewal or heartbeat call, a
 * broker subscribe or unsubscribe. Each piece of work is counted from its start to its end, so the core can say
 * when it is idle instead of anyone guessing from the passing of event-loop turns.
 */
export class Activity {
  #busy = 0;
  #waiters: (() => void)[] = [];

  /** Pieces of work started and not yet ended. */
  get busy(): number {
    return this.#busy;
  }

  /** Count `work` until it settles; returns it unchanged (its rejection is the caller's to handle). */
  track<T>(work: Promise<T>): Promise<T> {
    const end = this.begin();
    work.then(end, end);
    return work;
  }

  /** Count one piece of work; call the returned function (once) when it ends. */
  begin(): () => void {
    this.#busy++;
    this.#changed();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#busy--;
      this.#changed();
    };
  }

  /** Resolves at the next start or end of a piece of work. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Resolves once no work is in flight (at once if none is). */
  async idle(): Promise<void> {
    while (this.#busy > 0) await this.changed();
  }

  #changed(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }
}
