/** What a session needs from its connection; the runtime adapters implement it. Both calls are safe after close. */
export interface Transport {
  send(text: string): void;
  close(code: number, reason?: string): void;
  /** Join or leave a native fan-out topic of the runtime (Bun); absent where there is none. */
  subscribe?(topic: string): void;
  unsubscribe?(topic: string): void;
}
