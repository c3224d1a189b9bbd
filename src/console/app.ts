/// <reference lib="dom" />
/**
 * The browser console served at `GET /console` (README, "Console"): connect with the SDK, subscribe, send
 * `message` events, publish through `POST /publish`, and watch every frame in both directions. Built into one
 * inline script by scripts/build_console.ts; it loads nothing from anywhere.
 */
import { ShoalClient } from "../../client/src/index.ts";

type Sub = ReturnType<ShoalClient["subscribe"]>;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const log = $<HTMLOListElement>("log");
let client: ShoalClient | undefined;
const subscriptions = new Map<string, Sub>();
let reconnects = 0;
let connectedOnce = false;

/** One line of the log: time, direction, text. Newest at the bottom; at most 1,000 kept. */
function line(kind: "in" | "out" | "info" | "error", text: string): void {
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  time.textContent = new Date().toISOString().slice(11, 23);
  const arrow = document.createElement("b");
  arrow.textContent = kind === "in" ? "◀" : kind === "out" ? "▶" : kind === "error" ? "!" : "·";
  const body = document.createElement("code");
  body.textContent = text;
  item.append(time, arrow, body);
  log.append(item);
  while (log.childElementCount > 1000) log.firstElementChild!.remove();
  if ($<HTMLInputElement>("follow").checked) item.scrollIntoView({ block: "end" });
}

/** A WebSocket that writes every frame to the log, so the console shows what the SDK really sends and gets. */
class LoggedWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    this.addEventListener("message", (event) => line("in", String(event.data)));
    this.addEventListener("close", (event) => line("info", `closed ${event.code}${event.reason ? ` ${event.reason}` : ""}`));
  }
  override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    line("out", String(data));
    super.send(data);
  }
}

function defaultUrl(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

function setState(state: string): void {
  const el = $("state");
  el.textContent = state;
  el.dataset.state = state;
  if (state === "connected") {
    if (connectedOnce) reconnects++;
    connectedOnce = true;
    $("reconnects").textContent = String(reconnects);
  }
}

function parseFields(text: string): Record<string, unknown> | undefined {
  if (text.trim() === "") return undefined;
  const value = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("extra fields must be a JSON object");
  return value;
}

function connect(): void {
  client?.close();
  subscriptions.clear();
  renderSubscriptions();
  reconnects = 0;
  connectedOnce = false;
  const credential = $<HTMLInputElement>("credential").value.trim();
  const method = $<HTMLSelectElement>("method").value as "ticket" | "jwt";
  client = new ShoalClient($<HTMLInputElement>("url").value, {
    // The console's own socket class logs every frame.
    WebSocket: LoggedWebSocket,
    auth: credential ? () => Promise.resolve(method === "jwt" ? { method, token: credential } : { method, ticket: credential }) : undefined,
  });
  client.onError((error) => line("error", `${error.kind}: ${error.message}`));
  client.onStateChange((state) => setState(state));
  line("info", `connecting to ${$<HTMLInputElement>("url").value}`);
}

function renderSubscriptions(): void {
  const list = $("subscriptions");
  list.replaceChildren();
  for (const [name, sub] of subscriptions) {
    const item = document.createElement("li");
    item.textContent = name + " ";
    const button = document.createElement("button");
    button.textContent = "unsubscribe";
    button.onclick = () => {
      subscriptions.delete(name);
      renderSubscriptions();
      sub.unsubscribe().catch((error) => line("error", `unsubscribe ${name}: ${describe(error)}`));
    };
    item.append(button);
    list.append(item);
  }
  const select = $<HTMLSelectElement>("target");
  const chosen = select.value;
  select.replaceChildren(...[...subscriptions.keys()].map((name) => new Option(name, name, false, name === chosen)));
}

function describe(error: unknown): string {
  if (error && typeof error === "object" && "error" in error) return JSON.stringify((error as { error: unknown }).error);
  return error instanceof Error ? error.message : String(error);
}

function subscribe(): void {
  if (!client) return line("error", "connect first");
  const name = $<HTMLInputElement>("subscription").value.trim();
  let fields: Record<string, unknown> | undefined;
  try {
    fields = parseFields($<HTMLTextAreaElement>("fields").value);
  } catch (error) {
    return line("error", describe(error));
  }
  const sub = client.subscribe(name, {
    fields,
    recover: $<HTMLInputElement>("recover").checked,
    onMessage: () => {}, // shown by the frame log
    onUnsubscribed: (error: unknown) => {
      line("info", `${name} unsubscribed: ${JSON.stringify(error)}`);
    },
    onResubscribed: (event) => line("info", `${name} subscribed again${event.recovered === undefined ? "" : `, recovered: ${event.recovered}`}`),
  });
  subscriptions.set(name, sub);
  renderSubscriptions();
  sub.ready.catch((error: unknown) => {
    line("error", `subscribe ${name}: ${describe(error)}`);
    subscriptions.delete(name);
    renderSubscriptions();
  });
}

function sendMessage(): void {
  if (!client) return line("error", "connect first");
  const name = $<HTMLSelectElement>("target").value;
  let data: unknown;
  try {
    data = JSON.parse($<HTMLTextAreaElement>("data").value || "null");
  } catch (error) {
    return line("error", `data is not JSON: ${describe(error)}`);
  }
  client.send(name, data).catch((error: unknown) => line("error", `message ${name}: ${describe(error)}`));
}

async function publish(): Promise<void> {
  const token = $<HTMLInputElement>("token").value.trim();
  const body = $<HTMLTextAreaElement>("publishBody").value;
  line("out", `POST /publish ${body}`);
  try {
    const response = await fetch("/publish", {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body,
    });
    line(response.ok ? "in" : "error", `${response.status} ${await response.text()}`);
  } catch (error) {
    line("error", `publish: ${describe(error)}`);
  }
}

async function ping(): Promise<void> {
  if (!client) return line("error", "connect first");
  try {
    const ms = await client.ping();
    $("latency").textContent = `${ms.toFixed(1)} ms`;
  } catch (error) {
    line("error", `ping: ${describe(error)}`);
  }
}

$<HTMLInputElement>("url").value = defaultUrl();
$("connect").onclick = connect;
$("disconnect").onclick = () => {
  client?.close();
  client = undefined;
  subscriptions.clear();
  renderSubscriptions();
};
$("subscribe").onclick = subscribe;
$("send").onclick = sendMessage;
$("publish").onclick = () => void publish();
$("ping").onclick = () => void ping();
$("clear").onclick = () => log.replaceChildren();
setState("closed");
