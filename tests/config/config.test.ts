import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, parseConfig, RESERVED_FIELDS } from "../../src/config.ts";

/** The problems parseConfig reports for this input (fails the test if it accepts it). */
function problems(input: unknown): readonly string[] {
  try {
    parseConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.name, "ConfigError");
    assert.ok(error.problems.length > 0);
    for (const problem of error.problems) assert.ok(error.message.includes(problem), `message lacks ${problem}`);
    return error.problems;
  }
  assert.fail(`parseConfig accepted ${JSON.stringify(input)}`);
}

/** Exactly one problem, which starts with the dotted path `path: `. */
function oneProblemAt(input: unknown, path: string): string {
  const found = problems(input);
  assert.equal(found.length, 1, `expected one problem, got ${JSON.stringify(found)}`);
  assert.ok(found[0].startsWith(`${path}: `), `expected "${path}: ..." but got ${JSON.stringify(found[0])}`);
  return found[0];
}

const URL_A = "http://service.test/a";

// ---------------------------------------------------------------- defaults

test("parseConfig: an empty config gets every default", () => {
  const config = parseConfig({});
  assert.deepEqual(config.ws, {
    host: "127.0.0.1",
    port: 9000,
    ping: { interval: 15, timeout: 15 },
    maxMessageBytes: 1048576,
    maxPendingEvents: 1000,
    maxBufferedBytes: 8388608,
    handshakeTimeout: 10,
  });
  assert.deepEqual(config.http, {
    timeout: 15,
    tries: 3,
    wait: 3,
    rateLimitResetHeaderNames: ["X-Rate-Limit-Reset"],
    maxResponseBytes: 1048576,
  });
  assert.deepEqual(config.limits, {
    maxConnections: 0,
    maxSubscriptionsPerConnection: 1000,
    eventsPerSecond: 0,
    eventsBurst: 0,
    maxSubscriptionLength: 1024,
    maxExtraFieldsBytes: 16384,
    maxPendingBytes: 4194304,
    maxCallbacksPerService: 64,
    maxBufferedBytesTotal: 268435456,
  });
  assert.deepEqual(config.authentication, {});
  assert.deepEqual(config.services, {});
  assert.deepEqual(config.broker, { kind: "memory" });
  assert.deepEqual(config.log, { level: "info", format: "auto" });
});

test("parseConfig: undefined and null mean an empty config", () => {
  assert.deepEqual(parseConfig(undefined), parseConfig({}));
  assert.deepEqual(parseConfig(null), parseConfig({}));
});

test("parseConfig: defaults fill in beside the values given, at every level", () => {
  const config = parseConfig({ ws: { port: 9100, ping: { interval: 0 } }, http: { tries: 5 } });
  assert.equal(config.ws.port, 9100);
  assert.equal(config.ws.host, "127.0.0.1");
  assert.deepEqual(config.ws.ping, { interval: 0, timeout: 15 });
  assert.equal(config.ws.maxMessageBytes, 1048576);
  assert.deepEqual(config.http, {
    timeout: 15,
    tries: 5,
    wait: 3,
    rateLimitResetHeaderNames: ["X-Rate-Limit-Reset"],
    maxResponseBytes: 1048576,
  });
});

test("parseConfig: a service gets its defaults", () => {
  const config = parseConfig({ services: { books: { authorizer: URL_A } } });
  const books = config.services.books;
  assert.equal(books.requireAuthentication, true);
  assert.equal(books.authorizer, URL_A);
  assert.deepEqual(books.authorizerFields, []);
  assert.equal(books.authorizationRenewalJitter, 0);
  assert.deepEqual(books.extraFields, []);
  assert.deepEqual(books.filterFields, []);
  assert.equal(books.beforeSubscribe, undefined);
  assert.equal(books.heartbeatPeriod, undefined);
});

test("parseConfig: each parse gets its own default objects", () => {
  const first = parseConfig({});
  (first.http.rateLimitResetHeaderNames as string[]).push("Retry-After");
  (first.services as Record<string, unknown>).added = {};
  const second = parseConfig({});
  assert.deepEqual(second.http.rateLimitResetHeaderNames, ["X-Rate-Limit-Reset"]);
  assert.deepEqual(second.services, {});
});

test("parseConfig: a full, valid config is accepted as given", () => {
  const input = {
    ws: { host: "0.0.0.0", port: 0, ping: { interval: 1, timeout: 2 } },
    http: { timeout: 0.5, tries: 0, wait: 0, rateLimitResetHeaderNames: ["Retry-After"] },
    authentication: { ticket: { validationUrl: "http://auth.test/ticket", authFields: ["session_id"] } },
    services: {
      books: {
        requireAuthentication: false,
        authorizer: URL_A,
        authorizerFields: ["cap"],
        authorizationRenewalPeriod: 60,
        authorizationRenewalJitter: 5,
        extraFields: ["extra"],
        filterFields: ["user_id"],
        beforeSubscribe: "https://user:pw@service.test:8443/b?x=1",
        heartbeatPeriod: 10,
        onHeartbeat: URL_A,
      },
    },
  };
  const config = parseConfig(input);
  assert.deepEqual(config.ws.ping, { interval: 1, timeout: 2 });
  assert.deepEqual(config.http, {
    timeout: 0.5,
    tries: 0,
    wait: 0,
    rateLimitResetHeaderNames: ["Retry-After"],
    maxResponseBytes: 1048576,
  });
  assert.deepEqual(config.authentication, input.authentication);
  assert.deepEqual(config.services.books, input.services.books);
});

// ---------------------------------------------------------------- errors name the key

test("parseConfig: an unknown key is refused, naming its dotted path", () => {
  const problem = oneProblemAt({ ws: { prot: 9000 } }, "ws.prot");
  assert.match(problem, /unknown key/);
  oneProblemAt({ prot: 1 }, "prot");
  oneProblemAt({ http: { retries: 3 } }, "http.retries");
  oneProblemAt({ ws: { ping: { intervall: 3 } } }, "ws.ping.intervall");
  oneProblemAt({ services: { books: { on_message: URL_A } } }, "services.books.on_message");
});

test("parseConfig: a callback set to null is refused at start-up, naming the key (decision 10)", () => {
  for (const key of [
    "authorizer",
    "beforeSubscribe",
    "onSubscribe",
    "onMessage",
    "beforeUnsubscribe",
    "onUnsubscribe",
    "onAuthorizationChange",
  ]) {
    oneProblemAt({ services: { books: { [key]: null } } }, `services.books.${key}`);
  }
  oneProblemAt({ services: { books: { heartbeatPeriod: 5, onHeartbeat: null } } }, "services.books.onHeartbeat");
  oneProblemAt({ authentication: { ticket: { validationUrl: null } } }, "authentication.ticket.validationUrl");
});

test("parseConfig: extraFields and filterFields may not name a protocol key (decision 10, and E1's history keys)", () => {
  const all = ["event", "status", "error", "data", "subscription", "options", "published_at", "received_at", "queue_size", "sent_at"];
  all.push("offset", "epoch", "recover", "recovered");
  assert.deepEqual([...RESERVED_FIELDS].sort(), [...all].sort());
  for (const reserved of all) {
    const extra = oneProblemAt({ services: { books: { extraFields: ["ok", reserved] } } }, "services.books.extraFields");
    assert.match(extra, /protocol key/);
    oneProblemAt({ services: { books: { filterFields: [reserved] } } }, "services.books.filterFields");
  }
  // Names that merely resemble protocol keys are fine.
  const config = parseConfig({ services: { books: { extraFields: ["Event", "data2"], filterFields: ["user_id"] } } });
  assert.deepEqual(config.services.books.extraFields, ["Event", "data2"]);
});

test("parseConfig: history is { size: integer ≥ 1, ttl: seconds > 0 } (extension E1)", () => {
  const config = parseConfig({ services: { h: { history: { size: 100, ttl: 300 } } } });
  assert.deepEqual(config.services.h.history, { size: 100, ttl: 300 });
  assert.equal(parseConfig({ services: { p: {} } }).services.p.history, undefined);
  for (const history of [{ size: 0, ttl: 1 }, { size: 1.5, ttl: 1 }, { size: 10, ttl: 0 }, { size: 10 }, { ttl: 5 }, { size: 10, ttl: 5, x: 1 }, { size: 5e9, ttl: 1 }, { size: 10, ttl: 1e300 }]) {
    assert.ok(problems({ services: { h: { history } } }).some((p) => p.startsWith("services.h.history")), JSON.stringify(history));
  }
});

test("parseConfig: a service name with a dot, or an empty one, is refused under services", () => {
  const dotted = problems({ services: { "books.v2": {} } });
  assert.equal(dotted.length, 1);
  assert.ok(dotted[0].startsWith("services"), dotted[0]);
  assert.match(dotted[0], /'\.'/);
  const empty = problems({ services: { "": {} } });
  assert.equal(empty.length, 1);
  assert.ok(empty[0].startsWith("services"), empty[0]);
});

test("parseConfig: a service name with a dot is refused, naming that service", () => {
  // Among several services, the problem must say which name is wrong.
  const found = problems({ services: { books: {}, "books.v2": {}, authors: {} } });
  assert.equal(found.length, 1);
  assert.ok(found[0].includes("books.v2"), `the problem does not name the service: ${JSON.stringify(found[0])}`);
});

test("parseConfig: authorizationRenewalPeriod without an authorizer is refused", () => {
  const problem = oneProblemAt({ services: { books: { authorizationRenewalPeriod: 5 } } }, "services.books");
  assert.match(problem, /authorizationRenewalPeriod/);
  assert.match(problem, /authorizer/);
  oneProblemAt({ services: { books: { authorizer: URL_A, authorizationRenewalPeriod: 0 } } }, "services.books.authorizationRenewalPeriod");
});

test("parseConfig: heartbeatPeriod and onHeartbeat must come together", () => {
  assert.match(oneProblemAt({ services: { books: { heartbeatPeriod: 5 } } }, "services.books"), /onHeartbeat/);
  assert.match(oneProblemAt({ services: { books: { onHeartbeat: URL_A } } }, "services.books"), /heartbeatPeriod/);
  oneProblemAt({ services: { books: { heartbeatPeriod: -1, onHeartbeat: URL_A } } }, "services.books.heartbeatPeriod");
});

test("parseConfig: a callback that is not an absolute URL is refused, naming the key", () => {
  for (const bad of ["not a url", "/relative/path", "service.test/a", "", 5]) {
    oneProblemAt({ services: { books: { onMessage: bad } } }, "services.books.onMessage");
  }
  oneProblemAt({ authentication: { ticket: { validationUrl: "auth/ticket" } } }, "authentication.ticket.validationUrl");
});

test("parseConfig: negative, zero or non-finite durations and counts are refused where invalid", () => {
  oneProblemAt({ http: { timeout: -1 } }, "http.timeout");
  oneProblemAt({ http: { timeout: 0 } }, "http.timeout");
  oneProblemAt({ http: { timeout: Infinity } }, "http.timeout");
  oneProblemAt({ http: { timeout: NaN } }, "http.timeout");
  oneProblemAt({ http: { timeout: "15" } }, "http.timeout");
  oneProblemAt({ http: { wait: -0.1 } }, "http.wait");
  oneProblemAt({ http: { tries: -1 } }, "http.tries");
  oneProblemAt({ http: { tries: 1.5 } }, "http.tries");
  oneProblemAt({ ws: { ping: { interval: -1 } } }, "ws.ping.interval");
  oneProblemAt({ ws: { ping: { timeout: 0 } } }, "ws.ping.timeout");
  oneProblemAt({ ws: { port: 70000 } }, "ws.port");
  oneProblemAt({ ws: { maxMessageBytes: 0 } }, "ws.maxMessageBytes");
  oneProblemAt({ services: { books: { authorizationRenewalJitter: -1 } } }, "services.books.authorizationRenewalJitter");
});

test("parseConfig: every problem is reported at once, each starting with its dotted path", () => {
  const found = problems({
    ws: { prot: 1 },
    http: { timeout: -1 },
    services: { books: { extraFields: ["event"], onMessage: null } },
  });
  assert.equal(found.length, 4, JSON.stringify(found));
  const paths = found.map((p) => p.slice(0, p.indexOf(": "))).sort();
  assert.deepEqual(paths, ["http.timeout", "services.books.extraFields", "services.books.onMessage", "ws.prot"]);
});

test("parseConfig: a config that is not an object is refused", () => {
  for (const bad of ["config", 5, true]) problems(bad);
  oneProblemAt({ services: null }, "services");
  oneProblemAt({ ws: null }, "ws");
});

test("parseConfig: no field list may name __proto__, constructor or prototype (not plain keys in JavaScript)", () => {
  for (const name of ["__proto__", "constructor", "prototype"]) {
    for (const key of ["extraFields", "filterFields", "authorizerFields"]) {
      const problem = oneProblemAt({ services: { s: { [key]: ["ok", name] } } }, `services.s.${key}`);
      assert.match(problem, /must not name __proto__, constructor, prototype/);
    }
    oneProblemAt(
      { authentication: { ticket: { validationUrl: URL_A, authFields: [name] } } },
      "authentication.ticket.authFields",
    );
  }
  // Protocol keys stay allowed where they were (authorizer and auth fields).
  assert.deepEqual(parseConfig({ services: { s: { authorizerFields: ["data"] } } }).services.s.authorizerFields, ["data"]);
});

test("parseConfig: the limits of a public endpoint are validated, naming the key", () => {
  oneProblemAt({ limits: { maxConnections: -1 } }, "limits.maxConnections");
  oneProblemAt({ limits: { maxSubscriptionsPerConnection: 0 } }, "limits.maxSubscriptionsPerConnection");
  oneProblemAt({ limits: { eventsPerSecond: Infinity } }, "limits.eventsPerSecond");
  oneProblemAt({ limits: { eventsBurst: 1.5 } }, "limits.eventsBurst");
  oneProblemAt({ limits: { maxPendingBytes: "4M" } }, "limits.maxPendingBytes");
  oneProblemAt({ limits: { unknown: 1 } }, "limits.unknown");
  oneProblemAt({ ws: { handshakeTimeout: 0 } }, "ws.handshakeTimeout");
  oneProblemAt({ http: { maxResponseBytes: 0 } }, "http.maxResponseBytes");
  const config = parseConfig({ ws: { allowedOrigins: ["https://app.example.com", "https://*.example.com:8443"] } });
  assert.deepEqual(config.ws.allowedOrigins, ["https://app.example.com", "https://*.example.com:8443"]);
  for (const origin of ["app.example.com", "https://example.com/path", "https://a.*.example.com", "*"]) {
    oneProblemAt({ ws: { allowedOrigins: [origin] } }, "ws.allowedOrigins.0");
  }
});

test("parseConfig: publish.token must be an RFC 6750 token68, or no client could ever send it", () => {
  assert.equal(parseConfig({ publish: { token: "abc-DEF_1.2~3+4/5==" } }).publish.token, "abc-DEF_1.2~3+4/5==");
  for (const token of ["has space", "quote\"", "ünï", "a=b", "tab\t", "comma,"]) {
    oneProblemAt({ publish: { token } }, "publish.token");
  }
});
