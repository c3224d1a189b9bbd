// The README's config tables are a complete reference: every key src/config.ts accepts has a row, every row names a
// key it accepts, and each row's type and default agree with what parseConfig accepts and fills in.
//
// The keys are found by asking parseConfig, not by reading the schema's source: each object is probed with every word
// of src/config.ts as a key set to a symbol, which no key accepts; a key that exists answers with a type error, any
// other with "unknown key". A new key has a name, and its name is a word of src/config.ts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, parseConfig, UNSAFE_FIELDS } from "../../src/config.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PROBE = Symbol("probe");
/** The name a record (`services`) is probed with; rows write it `<name>`. */
const ENTRY = "entry";
const NOT_A_KEY = "zz_not_a_config_key";

/** Values for the required keys of each object, so that its optional keys' defaults can be read (kind: path). */
const SAMPLES: Readonly<Record<string, unknown>> = {
  "ws.tls.cert": "cert.pem",
  "ws.tls.key": "key.pem",
  "authentication.ticket.validationUrl": "http://auth.example/ticket/",
  "authentication.jwt.algorithms": ["HS256"],
  // Not required, but the object's own check wants exactly one key source beside the algorithms.
  "authentication.jwt.secret": "a-secret",
  "services.<name>.history.size": 10,
  "services.<name>.history.ttl": 60,
  "redis: broker.url": "redis://localhost:6379",
  "redis: broker.alt.url": "redis://localhost:6380",
  "redis-cluster: broker.nodes": ["redis://localhost:7001"],
  "upstash: broker.url": "https://example.upstash.io",
  "upstash: broker.token": "token",
};

/** Defaults the schema leaves unset and the code fills in, as the README shows them. */
const APPLIED_ELSEWHERE: Readonly<Record<string, string>> = {
  "metrics.prometheus.host": "`ws.host`", // main.ts: prometheus.host ?? config.ws.host
  "metrics.prometheus.prefix": '`"shoal"`', // src/metrics/metrics.ts: config.prometheus.prefix ?? "shoal"
};

interface ConfigObject {
  /** Dotted, a record's entry written `<name>`. */
  readonly path: string;
  /** The same path as parseConfig names it, the entry named ENTRY. */
  readonly at: string;
  /** The broker kind, for the keys of one `broker` variant. */
  readonly kind?: string;
  /** A whole config with `value` at this object. */
  wrap(value: Record<string, unknown>): unknown;
  /** This object's required keys, from SAMPLES. */
  readonly base: Record<string, unknown>;
}

interface ConfigKey {
  readonly path: string;
  readonly kind?: string;
  readonly required: boolean;
  readonly object: boolean;
  readonly defaultValue: unknown;
  /** The problems at this key when it is set to `value`. */
  probe(value: unknown): string[];
}

function problems(input: unknown): readonly string[] {
  try {
    parseConfig(input);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

function problemsAt(input: unknown, path: string): string[] {
  return problems(input).filter((p) => p.startsWith(`${path}: `)).map((p) => p.slice(path.length + 2));
}

function valueAt(config: unknown, path: string): unknown {
  let value = config;
  for (const segment of path.split(".")) {
    value = (value as Record<string, unknown> | undefined)?.[segment === "<name>" ? ENTRY : segment];
  }
  return value;
}

const label = (path: string, kind?: string) => (kind ? `${path} (kind ${kind})` : path);

/** Every key parseConfig accepts, objects included, found by probing with `candidates`. */
function discoverKeys(candidates: readonly string[]): ConfigKey[] {
  const keys: ConfigKey[] = [];
  const prefixOf = (path: string) => (path === "" ? "" : `${path}.`);

  const explore = (at: Omit<ConfigObject, "base">, outer: ConfigObject | undefined): void => {
    const prefix = prefixOf(at.path);
    const actual = prefixOf(at.at);
    const required: string[] = [];
    for (const problem of problems(at.wrap({}))) {
      if (!problem.startsWith(actual)) continue;
      const name = problem.slice(actual.length, problem.indexOf(": "));
      if (name.includes(".")) continue;
      const message = problem.slice(problem.indexOf(": ") + 2);
      if (message === `Invalid key: Expected "${name}" but received undefined`) required.push(name);
      const variant = message.match(/^Invalid type: Expected \(("[^"]*"(?: \| "[^"]*")*)\) but received undefined$/);
      if (variant && outer) {
        // A variant (`broker`): its discriminator is a key of every kind, defaulting as the whole object does.
        const path = `${prefix}${name}`;
        for (const kind of variant[1].split(" | ").map((k) => JSON.parse(k) as string)) {
          keys.push({
            path,
            kind,
            required: false,
            object: false,
            defaultValue: valueAt(parseConfig(outer.wrap(outer.base)), path),
            probe: (value) => problemsAt(at.wrap({ [name]: value }), `${actual}${name}`),
          });
          explore({ path: at.path, at: at.at, kind, wrap: (value) => at.wrap({ ...value, [name]: kind }) }, outer);
        }
        return;
      }
    }
    const base: Record<string, unknown> = {};
    for (const name of required) {
      const sample = `${at.kind ? `${at.kind}: ` : ""}${prefix}${name}`;
      assert.ok(Object.hasOwn(SAMPLES, sample), `add a value for the required key ${sample} to SAMPLES`);
      base[name] = SAMPLES[sample];
    }
    // Optional keys an object's cross-key check needs in its base (SAMPLES entries for non-required keys).
    for (const [sample, value] of Object.entries(SAMPLES)) {
      const name = sample.slice(prefix.length);
      if (!at.kind && sample.startsWith(prefix) && !name.includes(".") && !required.includes(name)) base[name] = value;
    }
    const object: ConfigObject = { ...at, base };
    const recordProbe = problemsAt(at.wrap({ [NOT_A_KEY]: PROBE }), `${actual}${NOT_A_KEY}`);
    if (recordProbe.length > 0 && !recordProbe.some((m) => m.startsWith("unknown key"))) {
      // A record (`services`): any name is a key; its entries are explored as `<name>`.
      const entry = { path: `${prefix}<name>`, at: `${actual}${ENTRY}`, kind: at.kind };
      explore({ ...entry, wrap: (value) => at.wrap({ ...base, [ENTRY]: value }) }, object);
      return;
    }
    const probed = at.wrap(Object.fromEntries(candidates.map((name) => [name, PROBE])));
    const defaults = parseConfig(at.wrap(base));
    for (const name of candidates) {
      const path = `${prefix}${name}`;
      const answer = problemsAt(probed, `${actual}${name}`);
      if (answer.length === 0 || answer.some((m) => m.startsWith("unknown key"))) continue;
      const isObject = answer.includes("Invalid type: Expected Object but received symbol");
      keys.push({
        path,
        kind: at.kind,
        required: required.includes(name),
        object: isObject,
        defaultValue: valueAt(defaults, path),
        probe: (value) => problemsAt(at.wrap({ ...base, [name]: value }), `${actual}${name}`),
      });
      const child = { path, at: `${actual}${name}`, kind: at.kind };
      if (isObject) explore({ ...child, wrap: (value) => at.wrap({ ...base, [name]: value }) }, object);
    }
  };

  explore({ path: "", at: "", wrap: (value) => value }, undefined);
  return keys;
}

interface Row {
  readonly option: string;
  readonly kinds: readonly (string | undefined)[];
  readonly type: string;
  readonly default: string;
  readonly socketshark: string;
  readonly meaning: string;
  readonly line: string;
}

const HEADERS = [
  "Option | Type | Default | SocketShark | Meaning",
  "Option | Kind | Type | Default | SocketShark | Meaning", // the broker options: the kinds that take each one
];

/** Cells of a table line; `\|` is a pipe inside a cell. */
function cells(line: string): string[] {
  return line.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll("\\|", "|"));
}

/** The option tables of the README's "Configuration" and "Brokers" sections. */
function readmeRows(readme: string): Row[] {
  const sections = readme.split(/^(?=## )/m).filter((s) => /^## (Configuration|Brokers)\n/.test(s));
  assert.equal(sections.length, 2, "README.md has a ## Configuration and a ## Brokers section");
  const rows: Row[] = [];
  for (const section of sections) {
    let header: string[] | undefined;
    for (const line of section.split("\n")) {
      if (!line.startsWith("|")) {
        header = undefined;
        continue;
      }
      const row = cells(line);
      if (header === undefined) {
        header = row;
        if (row[0] === "Option") assert.ok(HEADERS.includes(row.join(" | ")), `README table columns: ${line}`);
        continue;
      }
      if (header[0] !== "Option" || /^:?-+:?$/.test(row[0])) continue;
      assert.equal(row.length, header.length, `README row has ${header.length} cells: ${line}`);
      const cell = (name: string) => row[header!.indexOf(name)];
      const option = cell("Option").match(/^`([^`]+)`$/);
      assert.ok(option, `README row names exactly one key, in backticks: ${line}`);
      const kinds = header.includes("Kind") ? [...cell("Kind").matchAll(/`([^`]+)`/g)].map((m) => m[1]) : [undefined];
      assert.ok(kinds.length > 0, `README row names its broker kinds: ${line}`);
      rows.push({
        option: option[1],
        kinds,
        type: cell("Type"),
        default: cell("Default"),
        socketshark: cell("SocketShark"),
        meaning: cell("Meaning"),
        line,
      });
    }
  }
  return rows;
}

function readInputs(): { keys: ConfigKey[]; rows: Row[] } {
  const source = readFileSync(join(ROOT, "src", "config.ts"), "utf8");
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const rows = readmeRows(readme);
  const words = new Set(source.match(/[A-Za-z_$][\w$]*/g));
  for (const row of rows) for (const segment of row.option.split(".")) words.add(segment);
  const candidates = [...words].filter((w) => !UNSAFE_FIELDS.includes(w) && w !== "<name>" && !(w in Object.prototype));
  return { keys: discoverKeys(candidates), rows };
}

let inputs: { keys: ConfigKey[]; rows: Row[] } | undefined;
/** Read once, on first use, so that a malformed table fails the tests rather than the file's loading. */
const read = () => (inputs ??= readInputs());
const keyOf = (path: string, kind: string | undefined) => read().keys.find((k) => k.path === path && k.kind === kind);

test("README config tables: the probe finds the keys it should (sanity check of this test)", () => {
  const expected = [["ws.port"], ["limits.maxConnections"], ["services.<name>.history.ttl"], ["metrics.log"]];
  for (const [path, kind] of [...expected, ["broker.alt.url", "redis"]]) {
    assert.ok(keyOf(path, kind), `found ${label(path, kind)}`);
  }
  assert.equal(keyOf(NOT_A_KEY, undefined), undefined);
});

test("README config tables: every key src/config.ts accepts has a row", () => {
  const { keys, rows } = read();
  const covered = new Set(rows.flatMap((row) => row.kinds.map((kind) => label(row.option, kind))));
  const inside = (key: ConfigKey) => keys.some((k) => k.kind === key.kind && k.path.startsWith(`${key.path}.`));
  const leaves = keys.filter((key) => !key.object || !inside(key));
  const missing = leaves.map((key) => label(key.path, key.kind)).filter((key) => !covered.has(key));
  assert.deepEqual(missing, [], "keys without a README row (## Configuration or ## Brokers)");
});

test("README config tables: every row names a key src/config.ts accepts, once", () => {
  const { rows } = read();
  const seen = new Set<string>();
  for (const row of rows) {
    for (const kind of row.kinds) {
      assert.ok(keyOf(row.option, kind), `README row for a key parseConfig refuses: ${label(row.option, kind)}`);
      assert.ok(!seen.has(label(row.option, kind)), `two README rows for ${label(row.option, kind)}`);
      seen.add(label(row.option, kind));
    }
    assert.ok(row.meaning.length > 0, `README row without a meaning: ${row.line}`);
  }
});

test("README config tables: every default is what parseConfig fills in", () => {
  const { rows } = read();
  for (const row of rows) {
    for (const kind of row.kinds) {
      const key = keyOf(row.option, kind);
      if (!key) continue; // reported by "every row names a key"
      const where = `README default of ${label(row.option, kind)} (${row.default})`;
      if (row.default.startsWith("required")) {
        assert.ok(key.required, `${where}: the key is optional`);
        continue;
      }
      assert.ok(!key.required, `${where}: the key is required`);
      // An optional key given in its object's base (a cross-key check needs it) shows its sample, not a default.
      if (Object.hasOwn(SAMPLES, row.option)) continue;
      if (Object.hasOwn(APPLIED_ELSEWHERE, row.option)) {
        assert.equal(key.defaultValue, undefined, `${where}: the schema now fills it in`);
        assert.equal(row.default, APPLIED_ELSEWHERE[row.option], where);
        continue;
      }
      if (row.default.startsWith("–")) {
        assert.equal(key.defaultValue, undefined, `${where}: parseConfig fills in ${JSON.stringify(key.defaultValue)}`);
        continue;
      }
      const literal = row.default.match(/^`([^`]+)`/);
      assert.ok(literal, `${where}: starts with \`value\`, "–" or "required"`);
      const value = JSON.parse(literal[1].replace(/([{,]\s*)([A-Za-z_$][\w$]*)\s*:/g, '$1"$2":'));
      assert.deepEqual(key.defaultValue, value, where);
    }
  }
});

test("README config tables: every type is what parseConfig accepts", () => {
  const { rows } = read();
  for (const row of rows) {
    for (const kind of row.kinds) {
      const key = keyOf(row.option, kind);
      if (!key) continue; // reported by "every row names a key"
      const type = row.type.match(/^`([^`]+)`/)?.[1];
      const where = `README type of ${label(row.option, kind)} (${row.type})`;
      if (type === "integer") assert.notDeepEqual(key.probe(1.5), [], `${where}: 1.5 is accepted`);
      else if (type === "number") assert.deepEqual(key.probe(1.5), [], `${where}: 1.5 is refused`);
      else if (type === "boolean") assert.deepEqual(key.probe(true), [], `${where}: true is refused`);
      else if (type === "object") assert.ok(key.object, `${where}: not an object`);
      else if (type === "string") {
        assert.notDeepEqual(key.probe(1), [], `${where}: a number is accepted`);
        if (typeof key.defaultValue === "string") assert.deepEqual(key.probe(key.defaultValue), [], where);
      } else if (type === "string[]") {
        assert.notDeepEqual(key.probe("text"), [], `${where}: a string is accepted`);
        if (!row.type.includes("at least one")) assert.deepEqual(key.probe([]), [], `${where}: [] is refused`);
      } else if (type?.startsWith('"')) {
        const options = key.probe(PROBE).join("\n").match(/Expected \((.*)\) but received symbol/)?.[1];
        assert.ok(options, `${where}: not a choice of strings`);
        const sorted = (list: string) => list.split("|").map((o) => o.trim()).sort();
        assert.deepEqual(sorted(type), sorted(options), where);
      } else assert.fail(`${where}: starts with an unknown type`);
    }
  }
});

test("README config tables: the SocketShark column names SocketShark settings, or says –", () => {
  const { rows } = read();
  const settings = JSON.parse(readFileSync(join(ROOT, "tests", "cli", "fixtures", "config_defaults.json"), "utf8"));
  for (const row of rows) {
    if (row.socketshark.startsWith("–")) continue;
    const names = [...row.socketshark.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    assert.ok(names.length > 0, `README SocketShark cell: backticked names, or –: ${row.line}`);
    for (const name of names) {
      const parts = name.match(/^([A-Z][A-Z_]*)((?:\[(?:"[a-z_]+"|name)\])*)$/);
      assert.ok(parts, `README SocketShark name ${name} is NAME["key"]…: ${row.line}`);
      assert.ok(Object.hasOwn(settings, parts[1]), `${parts[1]} is not a setting of SocketShark's config_defaults.py`);
    }
  }
});
