/** One chat message, as stored by the service and published as the `data` of `chat.<room>` messages. */
export interface ChatMessage {
  readonly id: string;
  readonly room: string;
  /** The sender's user id; null for an announcement (POST /api/announce). */
  readonly from: string | null;
  readonly text: string;
  /** ISO-8601. */
  readonly at: string;
  /** A whisper's recipient: only `from` and `to` see it. */
  readonly to?: string;
}

/** The rooms: their recent messages (the snapshot new subscribers get) and who is in them. */
export class ChatRooms {
  readonly #recent = new Map<string, ChatMessage[]>();
  /** room → session_id → user_id: one entry per subscribed connection. */
  readonly #members = new Map<string, Map<string, string>>();
  readonly #keep: number;

  constructor(options: { keep?: number } = {}) {
    this.#keep = options.keep ?? 50;
  }

  /** Store a new message and return it. */
  post(room: string, fields: { from: string | null; text: string; to?: string }): ChatMessage {
    const message: ChatMessage = { id: crypto.randomUUID(), room, at: new Date().toISOString(), ...fields };
    const recent = this.#recent.get(room) ?? [];
    recent.push(message);
    if (recent.length > this.#keep) recent.shift();
    this.#recent.set(room, recent);
    return message;
  }

  /** Take back a message that could not be published. */
  remove(message: ChatMessage): void {
    const recent = this.#recent.get(message.room) ?? [];
    this.#recent.set(message.room, recent.filter((m) => m.id !== message.id));
  }

  /** The last `count` messages of `room` that `userId` may see, oldest first. */
  recent(room: string, userId: string, count = 20): ChatMessage[] {
    const visible = (m: ChatMessage) => m.to === undefined || m.to === userId || m.from === userId;
    return (this.#recent.get(room) ?? []).filter(visible).slice(-count);
  }

  join(room: string, sessionId: string, userId: string): void {
    const members = this.#members.get(room) ?? new Map<string, string>();
    members.set(sessionId, userId);
    this.#members.set(room, members);
  }

  // A Shoal stopped with SIGTERM calls on_unsubscribe for every session; one that is killed cannot, so a real
  // service would also expire members (e.g. with Shoal's onHeartbeat).
  leave(room: string, sessionId: string): void {
    this.#members.get(room)?.delete(sessionId);
  }

  /** The users in `room`, sorted, each once. */
  members(room: string): string[] {
    return [...new Set(this.#members.get(room)?.values())].sort();
  }
}
