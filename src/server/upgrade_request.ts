/** Why an upgrade request is malformed, as answered to the client; undefined when it is a valid RFC 6455 request. */
export type UpgradeProblem =
  | { readonly status: 400; readonly error: string }
  | { readonly status: 426; readonly error: string };

/** 16 random bytes in base64 (RFC 6455 §4.1): 22 characters and `==`. */
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/**
 * Check a request that asks to be upgraded (`Upgrade: websocket`) before the runtime sees it: a runtime answers
 * a malformed one with a 500 and a stack trace (Deno) or upgrades what it should refuse (a version-8 request, a
 * short key). A wrong version gets 426 with `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2), anything else 400.
 */
export function upgradeProblem(header: (name: string) => string | undefined): UpgradeProblem | undefined {
  const connection = header("connection") ?? "";
  if (!connection.split(",").some((token) => token.trim().toLowerCase() === "upgrade")) {
    return { status: 400, error: "Connection: Upgrade is missing." };
  }
  const version = header("sec-websocket-version");
  if (version?.trim() !== "13") return { status: 426, error: "Unsupported WebSocket version: use 13." };
  if (!KEY.test(header("sec-websocket-key")?.trim() ?? "")) {
    return { status: 400, error: "Sec-WebSocket-Key is missing or invalid." };
  }
  return undefined;
}
