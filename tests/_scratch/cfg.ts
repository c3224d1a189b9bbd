import { parseConfig, ConfigError } from "../../src/config.ts";
const cases: unknown[] = [
  { ws: { prot: 1 } },
  { services: { s: { authorizer: null } } },
  { services: { s: { extraFields: ["event"] } } },
  { services: { s: { filterFields: ["options"] } } },
  { services: { "a.b": {} } },
  { services: { s: { authorizationRenewalPeriod: 5 } } },
  { services: { s: { heartbeatPeriod: 5 } } },
  { services: { s: { onHeartbeat: "http://x/" } } },
  { services: { s: { beforeSubscribe: "not a url" } } },
  { http: { timeout: -1 } },
  { http: { wait: -1, tries: -1 } },
  { foo: 1 },
  { authentication: { ticket: { validationUrl: null } } },
  { services: { "": {} } },
  { ws: { ping: { interval: -1 } } },
  { services: { s: { extraFields: ["event"], filterFields: ["data"], beforeSubscribe: "x" } } },
  { services: { s: { onMessage: "ftp://x" } } },
  { services: { s: { onMessage: "javascript:alert(1)" } } },
];
for (const c of cases) {
  try { parseConfig(c); console.log(JSON.stringify(c), "=> OK"); }
  catch (e) { console.log(JSON.stringify(c), "=>", e instanceof ConfigError, JSON.stringify((e as ConfigError).problems)); }
}
console.log(JSON.stringify(parseConfig(undefined)));
console.log(JSON.stringify(parseConfig({ services: { s: {} } })));
