// The example page: log in, chat in #lobby, and see your own notices, through the Shoal client SDK. The example
// service serves this file, the page, and the SDK bundle (/shoal-client.js, built from client/src).
// @ts-ignore: a URL the service answers, not a file beside this one (so that `deno check examples/` passes)
import { ShoalClient } from "/shoal-client.js";

const ROOM = "lobby";
const $ = (id) => document.getElementById(id);
const { shoalUrl } = await (await fetch("/config.json")).json();

/** POST JSON to the example service and return its JSON answer; throws with the service's error. */
async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error ?? `${path} answered ${response.status}`);
  return answer;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const { user_id, ticket } = await post("/auth/ticket", { username: $("username").value });
    showError("");
    start(user_id, ticket);
  } catch (error) {
    showError(error.message);
  }
});

/** Connect as `userId`, with the ticket the login gave for the first connection. */
function start(userId, firstTicket) {
  $("login").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = $("me").dataset.user = userId;

  let unusedTicket = firstTicket;
  const client = new ShoalClient(shoalUrl, {
    // Called before every (re)connect: a ticket works once, so each connection gets a fresh one.
    auth: async () => {
      const ticket = unusedTicket ?? (await post("/auth/ticket", { username: userId })).ticket;
      unusedTicket = undefined;
      return { ticket };
    },
  });
  client.onStateChange(showState);
  client.onError((event) => console.warn(`shoal: ${event.message}`, event));

  // Your own topic (the service refuses anyone else's). Some notices carry the filter field session_id: they reach
  // only the connection they are for, not your other tabs. Subscribed first: joining the lobby sends one.
  client.subscribe(`user.${userId}`, { onMessage: (message) => addNotice(message.data.text) });

  // While a recovery replays what was missed: the last offset it replays, and how many came.
  let recovering;
  const chat = client.subscribe(`chat.${ROOM}`, {
    onMessage(message) {
      if (recovering && message.offset <= recovering.until) showRecovery("recovered", ++recovering.count);
      addMessage(message.data, message.offset);
    },
    // After a reconnect: either every missed message follows (history), or the history is gone and the OK's
    // snapshot (before_subscribe's data) is the state to show.
    onResubscribed({ recovered, reply }) {
      if (recovered) {
        recovering = { until: reply.offset, count: 0 };
        showRecovery("recovered", 0);
      } else {
        recovering = undefined;
        $("messages").replaceChildren();
        for (const message of reply.data.messages) addMessage(message);
        showRecovery("reloaded", reply.data.messages.length);
      }
    },
    onUnsubscribed: (error) => showError(`No longer in #${ROOM}: ${error}`),
  });
  // The first OK carries the room's last messages.
  chat.ready.then(
    (reply) => reply.data.messages.forEach((message) => addMessage(message)),
    (error) => showError(`Could not join #${ROOM}: ${error.message}`),
  );

  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("chat-text").value;
    const to = $("chat-to").value.trim();
    try {
      // on_message always answers (the message's id, or an error), so the SDK can wait for that reply.
      await client.send(`chat.${ROOM}`, to ? { text, to } : { text }, { expectReply: true });
      $("chat-text").value = "";
      showError("");
    } catch (error) {
      showError(error.message);
    }
  });
}

/** Show a chat message once (a message may come both in a snapshot and live). */
function addMessage(message, offset) {
  const list = $("messages");
  if (list.querySelector(`[data-id="${CSS.escape(message.id)}"]`)) return;
  const item = document.createElement("li");
  item.dataset.id = message.id;
  if (offset !== undefined) item.dataset.offset = String(offset);
  if (message.to) item.className = "whisper";
  if (message.from === null) item.className = "announcement";
  const who = message.from === null ? "📢" : message.to ? `${message.from} → ${message.to}` : message.from;
  // textContent, never innerHTML: the text is whatever a user typed.
  item.append(time(message.at), Object.assign(document.createElement("b"), { textContent: `${who}: ` }), message.text);
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function addNotice(text) {
  const item = document.createElement("li");
  item.append(time(new Date().toISOString()), text);
  $("notices").prepend(item);
}

function time(iso) {
  const element = document.createElement("time");
  element.dateTime = iso;
  element.textContent = new Date(iso).toLocaleTimeString();
  return element;
}

const STATE_TEXT = { connecting: "connecting…", connected: "connected", closed: "closed" };

function showState(state, info) {
  $("state").dataset.state = state;
  $("state").textContent = state !== "disconnected" ? STATE_TEXT[state] : `disconnected (${info.description})` +
    (info.retryIn === undefined ? "" : `: retrying in ${Math.ceil(info.retryIn / 1000)} s`);
}

function showRecovery(result, count) {
  const element = $("recovery");
  element.dataset.result = result;
  element.dataset.count = String(count);
  element.textContent = result === "recovered"
    ? `Reconnected: recovered ${count} missed message${count === 1 ? "" : "s"}.`
    : `Reconnected, but Shoal had lost the history (restarted without Redis?): reloaded the last ${count} messages.`;
}

function showError(text) {
  $("error").textContent = text;
}
