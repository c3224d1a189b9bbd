/**
 * A complete Shoal config: every option with its default, and one open demo service.
 * Run it with `npm start` (or `bun run main.ts -c config.example.ts`, `deno run -A main.ts -c config.example.ts`).
 *
 * A config module's default export is a plain object. `import type` keeps it loadable by the compiled binary,
 * which has no `src/` beside it; `defineConfig` from `./src/config.ts` gives the same types where the source is.
 */
import type { ConfigInput } from "./src/config.ts";

export default {
  ws: {
    // The listen address; unset, 127.0.0.1 (only this machine), or $SHOAL_DEFAULT_HOST (the Docker image: 0.0.0.0).
    // host: "127.0.0.1",
    port: 9000,
    // Server WebSocket pings every `interval` seconds; no pong within `timeout` closes the connection (1000).
    // `interval: 0` turns pings off.
    ping: { interval: 15, timeout: 15 },
    // Larger incoming frames close the connection with 1009.
    maxMessageBytes: 1048576,
    // Events waiting behind a slow one (ping is always answered at once); more closes with 1008.
    maxPendingEvents: 1000,
    // Outgoing bytes a client may leave unread before it is closed as a slow consumer (1013).
    maxBufferedBytes: 8388608,
    // Seconds from TCP accept to a completed upgrade or request; idle HTTP connections are closed after it too.
    handshakeTimeout: 10,
    // Browser origins allowed to connect (exact, or `*.` for leading host labels); unset allows any. Set it when
    // browsers connect from the internet (cross-site WebSocket hijacking). No Origin header = not a browser = allowed.
    // allowedOrigins: ["https://app.example.com", "https://*.example.com"],
    // tls: { cert: "/etc/shoal/cert.pem", key: "/etc/shoal/key.pem" },
  },

  // Limits of a public endpoint (README, "Security"). 0 means no limit where noted.
  limits: {
    maxConnections: 0, // per node; past it upgrades get 503 (0: no cap)
    maxSubscriptionsPerConnection: 1000, // then "Too many subscriptions."
    eventsPerSecond: 0, // token bucket per connection, ping exempt; then "Rate limit exceeded." (0: off)
    eventsBurst: 0, // bucket size (0: eventsPerSecond)
    maxSubscriptionLength: 1024, // UTF-8 bytes of a subscription name
    maxExtraFieldsBytes: 16384, // a subscription's extra fields as JSON; more gets "Extra fields too large."
    maxPendingBytes: 4194304, // bytes of queued events of one connection; more closes with 1008
    maxCallbacksPerService: 64, // calls in flight to one service; more fail at once with "Service unavailable."
    maxBufferedBytesTotal: 268435456, // outgoing bytes buffered for all clients; past it the furthest behind get 1013
  },

  // Every call to a service: seconds per attempt, attempts, seconds between attempts, and the headers that
  // say how long to wait after a 429 (first one present wins; capped at 3600 s).
  http: {
    timeout: 15,
    tries: 3,
    wait: 3,
    rateLimitResetHeaderNames: ["X-Rate-Limit-Reset"],
    // Largest answer body a service may send; larger is a failed call. Redirects are never followed.
    maxResponseBytes: 1048576,
    // caFile: "/etc/shoal/services-ca.pem",
  },

  // Ticket authentication: `{"event":"auth","ticket":T}` is POSTed as `{"ticket":T}` to validationUrl; the
  // listed fields of a `{"status":"ok",...}` answer become the session's identity.
  authentication: {
    // ticket: { validationUrl: "http://auth-service/auth/ticket/", authFields: ["session_id", "user_id"] },
    // JWTs (`{"event":"auth","method":"jwt","token":T}`): exactly one of secret (HS*), publicKey (PEM) or jwksUrl.
    // jwt: {
    //   algorithms: ["RS256"],
    //   jwksUrl: "https://login.example.com/.well-known/jwks.json",
    //   issuer: "https://login.example.com/",
    //   audience: "shoal",
    //   authFields: ["user_id"],
    //   leeway: 30, // seconds of clock skew; the identity lapses at exp + leeway
    // },
  },

  services: {
    // `demo.<anything>`: anyone may subscribe, no callbacks. Try it with POST /publish (see README).
    demo: {
      requireAuthentication: false,
      extraFields: [],
      filterFields: [],
    },
    // A service with every option, commented out:
    // books: {
    //   requireAuthentication: true,
    //   authorizer: "http://books/authorize/",
    //   authorizerFields: ["capabilities"],
    //   authorizationRenewalPeriod: 60,
    //   authorizationRenewalJitter: 10,
    //   extraFields: ["book_version"],
    //   filterFields: ["user_id", "book_version"],
    //   beforeSubscribe: "http://books/before_subscribe/",
    //   onSubscribe: "http://books/on_subscribe/",
    //   onMessage: "http://books/on_message/",
    //   beforeUnsubscribe: "http://books/before_unsubscribe/",
    //   onUnsubscribe: "http://books/on_unsubscribe/",
    //   onAuthorizationChange: "http://books/on_authorization_change/",
    //   heartbeatPeriod: 30,
    //   onHeartbeat: "http://books/heartbeat/",
    //   history: { size: 1000, ttl: 600 }, // keep the last 1000 messages 10 min: clients recover what they missed
    //   presence: { joinLeave: true }, // the presence event, and join/leave frames to the other subscribers
    // },
  },

  // Where published messages come from. "memory" keeps everything in this process (feed it with POST /publish).
  broker: { kind: "memory" },
  // Redis, as SocketShark (services PUBLISH to `channelPrefix + subscription`); seconds throughout:
  // broker: {
  //   kind: "redis",
  //   url: "redis://:password@localhost:6379/0", // rediss:// for TLS
  //   channelPrefix: "",
  //   pingInterval: 10, // PING every 10 s; a connection silent for pingInterval + pingTimeout is replaced
  //   pingTimeout: 5,
  //   connectTimeout: 10, // at start-up: exit 1 if Redis cannot be reached within this
  //   maxReconnectDelay: 5, // reconnect backoff cap after an outage
  //   onConnectionLoss: "reconnect", // or "shutdown", SocketShark's behaviour
  //   // alt: { url: "redis://new-redis:6379/0", channelPrefix: "" }, // a second Redis during a migration
  // },
  // broker: { kind: "redis-cluster", nodes: ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"], sharded: true },
  // broker: { kind: "upstash", url: "https://eu1-example.upstash.io", token: "AX...=" },

  // POST /publish takes the same JSON a service would PUBLISH to Redis, with `Authorization: Bearer <token>`.
  // Without a token the endpoint is disabled.
  publish: { token: "change-me", maxBodyBytes: 1048576 },

  // level: trace | debug | info | warning | error | fatal; format: auto (logfmt on a terminal, else JSON lines) | json | pretty
  log: { level: "info", format: "auto" },

  // Prometheus text at GET /metrics on the main port, or on its own listener with `port` (and `host`).
  // `prefix: "socketshark"` gives SocketShark's metric names. `log: {}` logs SocketShark's debug "metrics" lines.
  metrics: { prometheus: { prefix: "shoal" } },

  // Seconds to wait for sessions' unsubscribe callbacks at shutdown before exiting anyway.
  shutdown: { drainTimeout: 10 },

  // The browser console at http://127.0.0.1:9000/console: connect, subscribe, send, publish, watch every frame.
  // Off by default; on here for the quick start.
  console: { enabled: true },

  // The admin API at /admin/* (info, channels, presence, disconnect, unsubscribe, publish), on every node at once:
  // admin: { token: "a-long-random-token", reportInterval: 5 },
} satisfies ConfigInput;
