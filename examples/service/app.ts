import { type Context, Hono } from "hono";
import { logger } from "hono/logger";
import * as v from "valibot";
import type { ChatMessage, ChatRooms } from "./chat.ts";
import type { Publication, Publisher } from "./publisher.ts";
import type { TicketBook } from "./tickets.ts";

/** What the app serves to browsers besides its API: the page (examples/browser/) and the SDK bundle. */
export interface PageAssets {
  file(name: "index.html" | "app.js"): Response;
  /** The client SDK as one ES module. */
  sdk(): Promise<Response>;
}

export interface AppOptions {
  readonly tickets: TicketBook;
  readonly rooms: ChatRooms;
  readonly publisher: Publisher;
  /** Shoal's WebSocket URL, as the page should dial it. */
  readonly shoalWsUrl: string;
  readonly assets: PageAssets;
}

const NAME = /^[a-z0-9_-]{1,32}$/;
const Name = v.pipe(v.string(), v.trim(), v.toLowerCase(), v.regex(NAME));
const Login = v.object({ username: Name });
const Announce = v.object({ room: Name, text: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(500)) });
/** Every callback's body: the subscription, then the session's auth fields (docs/protocol.md §9.1). */
const Callback = v.object({ subscription: v.string(), user_id: v.string(), session_id: v.string() });
/** What the page sends as a `message` event's data; each message below is the error the client gets. */
const ChatData = v.object({
  text: v.pipe(
    v.string("Send a text."),
    v.trim(),
    v.minLength(1, "Say something."),
    v.maxLength(500, "At most 500 characters."),
  ),
  to: v.optional(v.pipe(v.string(), v.trim(), v.toLowerCase(), v.regex(NAME, "Whisper to a username."))),
}, 'Send {"text": …, "to": …}.');

/** The example service: a login that hands out tickets, Shoal's callbacks, an announcement API, and the page. */
export function createApp({ tickets, rooms, publisher, shoalWsUrl, assets }: AppOptions): Hono {
  const app = new Hono();
  app.use(logger());

  // ---- The browser page (examples/browser/) and the SDK it imports.
  app.get("/", () => assets.file("index.html"));
  app.get("/app.js", () => assets.file("app.js"));
  app.get("/shoal-client.js", () => assets.sdk());
  app.get("/config.json", (c) => c.json({ shoalUrl: shoalWsUrl }));

  // ---- Login: no password in this example; a real app hands tickets to its logged-in user only.
  app.post("/auth/ticket", async (c) => {
    const login = v.safeParse(Login, await c.req.json().catch(() => null));
    if (!login.success) return c.json({ error: "A username is 1 to 32 of a-z, 0-9, _ and -." }, 400);
    const userId = login.output.username;
    return c.json({ user_id: userId, ticket: tickets.issue(userId) });
  });

  // ---- Shoal's callbacks (docs/protocol.md §9). A "no" is still a 200: any other status counts as a failed
  // call, which Shoal retries and then answers "Service unavailable.".
  const ok = (c: Context, extra: Record<string, unknown> = {}) => c.json({ status: "ok", ...extra });
  const no = (c: Context, error: string) => c.json({ status: "error", error });
  const callback = async (c: Context) => v.parse(Callback, await c.req.json());
  const topic = (subscription: string) => subscription.slice(subscription.indexOf(".") + 1);

  /** Store a chat message, then publish it; stored first, so that no snapshot taken meanwhile misses it. */
  const post = async (room: string, fields: Parameters<ChatRooms["post"]>[1]): Promise<ChatMessage> => {
    const message = rooms.post(room, fields);
    try {
      await publisher.publish(publications(`chat.${room}`, message));
    } catch (error) {
      rooms.remove(message);
      throw error;
    }
    return message;
  };

  app.post("/shoal/ticket", async (c) => {
    const { ticket } = await c.req.json(); // {"ticket": T}, T as the client sent it: any JSON value
    const identity = typeof ticket === "string" ? tickets.redeem(ticket) : undefined;
    return identity ? ok(c, { ...identity }) : no(c, "Invalid or expired ticket.");
  });

  app.post("/shoal/chat/authorize", async (c) => {
    const { subscription } = await callback(c);
    return v.is(Name, topic(subscription)) ? ok(c) : no(c, "No such room.");
  });

  app.post("/shoal/user/authorize", async (c) => {
    const { subscription, user_id } = await callback(c);
    return topic(subscription) === user_id ? ok(c) : no(c, "Unauthorized.");
  });

  // The snapshot: the subscribe OK carries the room's last messages (history only replays what a client missed).
  app.post("/shoal/chat/before_subscribe", async (c) => {
    const { subscription, user_id } = await callback(c);
    return ok(c, { data: { messages: rooms.recent(topic(subscription), user_id) } });
  });

  app.post("/shoal/chat/on_subscribe", async (c) => {
    const { subscription, user_id, session_id } = await callback(c);
    const room = topic(subscription);
    rooms.join(room, session_id, user_id);
    // To this connection only: its user's topic, narrowed by the filter field session_id.
    const text = `Welcome to #${room}, ${user_id}. Here now: ${rooms.members(room).join(", ")}.`;
    await publisher.publish([{ message: { subscription: `user.${user_id}`, data: { text }, session_id } }])
      .catch((error) => console.error(`welcome notice to ${user_id} not published: ${error}`));
    return ok(c); // the answer is ignored
  });

  app.post("/shoal/chat/on_message", async (c) => {
    const body = await c.req.json();
    const { subscription, user_id } = v.parse(Callback, body);
    const data = v.safeParse(ChatData, body.data);
    if (!data.success) return no(c, data.issues[0].message);
    const { text, to } = data.output;
    if (to === user_id) return no(c, "Whisper to someone else.");
    try {
      const message = await post(topic(subscription), { from: user_id, text, ...(to ? { to } : {}) });
      return ok(c, { data: { id: message.id } }); // the reply to the sender's `message` event
    } catch (error) {
      console.error(`a message of ${user_id} was not published: ${error}`);
      return no(c, "Your message could not be delivered; try again.");
    }
  });

  // Could refuse ("no") to keep the client subscribed; on a disconnect it is called too, its answer ignored.
  app.post("/shoal/chat/before_unsubscribe", (c) => ok(c));

  app.post("/shoal/chat/on_unsubscribe", async (c) => {
    const { subscription, session_id } = await callback(c);
    rooms.leave(topic(subscription), session_id);
    return ok(c);
  });

  // ---- What the rest of a backend would do: publish on its own, here an announcement to a room.
  app.post("/api/announce", async (c) => {
    const announce = v.safeParse(Announce, await c.req.json().catch(() => null));
    if (!announce.success) return c.json({ error: 'Send {"room": …, "text": …}.' }, 400);
    const { room, text } = announce.output;
    const message = await post(room, { from: null, text });
    return c.json({ id: message.id });
  });

  app.onError((error, c) => {
    console.error(`${c.req.method} ${c.req.path}: ${error}`);
    return c.json(
      { error: v.isValiError(error) ? "Invalid request." : "Internal error." },
      v.isValiError(error) ? 400 : 500,
    );
  });
  return app;
}

/** A chat message as published: to the whole room, or, for a whisper, one copy to each of its two users. */
function publications(subscription: string, message: ChatMessage): Publication[] {
  if (message.to === undefined) return [{ message: { subscription, data: message }, idempotencyKey: message.id }];
  // user_id is the chat service's filter field: each copy reaches only that user's subscriptions.
  return [message.to, message.from!].map((userId) => ({
    message: { subscription, data: message, user_id: userId },
    idempotencyKey: `${message.id}:${userId}`,
  }));
}
