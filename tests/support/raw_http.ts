import { connect } from "node:net";

/** An HTTP answer read off a raw socket: status, lower-cased headers and the body (Content-Length bytes). */
export interface RawAnswer {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/**
 * Send a GET with exactly these headers over a plain TCP socket and read the answer (a 101 is returned as soon
 * as its head arrives, and the socket closed). `fetch` cannot send `Connection`, `Upgrade` or a chosen `Origin`.
 */
export function rawGet(port: number, headers: Readonly<Record<string, string>>, timeoutMs = 5000): Promise<RawAnswer> {
  return rawRequest(port, "GET /", headers, "", timeoutMs);
}

/**
 * `rawGet` with any request line start (`"POST /publish"`) and a body sent exactly as given (no framing added: set
 * the headers for it).
 */
export function rawRequest(
  port: number,
  request: string,
  headers: Readonly<Record<string, string>>,
  body = "",
  timeoutMs = 5000,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms: ${data.toString("latin1")}`)), timeoutMs);
    const finish = (result: RawAnswer | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    socket.on("error", (error) => finish(error));
    socket.on("connect", () => {
      const lines = [`${request} HTTP/1.1`, "Host: 127.0.0.1", ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      socket.write(lines.join("\r\n") + "\r\n\r\n" + body);
    });
    const parse = (final: boolean) => {
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) return final ? finish(new Error(`connection closed before a full head: ${data.toString("latin1")}`)) : undefined;
      const lines = data.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0].split(" ")[1]);
      const map = new Map(lines.slice(1).map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
      }));
      if (status === 101 || request.startsWith("HEAD ")) return finish({ status, headers: map, body: "" });
      const length = Number(map.get("content-length") ?? NaN);
      const body = data.subarray(end + 4);
      if (Number.isFinite(length) && body.length >= length) {
        return finish({ status, headers: map, body: body.subarray(0, length).toString("utf8") });
      }
      if (final) finish({ status, headers: map, body: body.toString("utf8") });
    };
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      parse(false);
    });
    socket.on("end", () => parse(true));
  });
}

/** The headers of a valid RFC 6455 upgrade request, to start from. */
export function upgradeHeaders(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return {
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    ...extra,
  };
}
