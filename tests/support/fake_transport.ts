import type { Transport } from "../../src/core/session.ts";

/** Records what a session sends; `frames` are the parsed JSON objects. */
export class FakeTransport implements Transport {
  readonly texts: string[] = [];
  closed: { code: number; reason?: string } | undefined;

  send(text: string): void {
    if (this.closed) return;
    this.texts.push(text);
  }

  close(code: number, reason?: string): void {
    this.closed ??= { code, reason };
  }

  get frames(): Record<string, unknown>[] {
    return this.texts.map((t) => JSON.parse(t));
  }

  /** Frames sent since the last call. */
  take(): Record<string, unknown>[] {
    const frames = this.frames;
    this.texts.length = 0;
    return frames;
  }
}
