import type {
  PresenceChange,
  PresenceEntry,
  PresenceExpiry,
  PresenceSnapshot,
  PresenceUser,
} from "../core/presence_tracker.ts";
import { parseJson } from "../protocol/json.ts";
import { hasHashTag, type LuaScript, luaScript } from "./history_script.ts";

/**
 * The Redis side of presence (extension E3), shared by the redis, redis-cluster and upstash brokers: key names and
 * two Lua scripts (a write, and the purge of expired entries that comes before each read's `HVALS`). A subscription's presence is a hash (session id → its auth fields as JSON) and a sorted set
 * (session id → when its entry expires, in Redis server milliseconds), as Centrifugo keeps it. Every Shoal node
 * rewrites its own entries every refresh interval; an entry not rewritten expires, and the first script that sees it
 * expired removes it and returns it, so that exactly one node announces its `leave`. Both keys expire too, two ttls
 * after the last write. Time is Redis's (`TIME`), so the nodes' clocks do not matter.
 */

/** The keys of one subscription's presence: one cluster slot, the channel's. */
export interface PresenceKeys {
  readonly entries: string;
  readonly expiries: string;
}

/** The key prefix; it holds no `{`, so a key's hash tag is the one of its channel part. */
export const PRESENCE_KEY_PREFIX = "shoal:presence";

/** Most entries written by one script call: a refresh of a large channel is split into calls of this size. */
export const PRESENCE_BATCH = 1000;

/**
 * Writes (KEYS entries, expiries; ARGV ttl ms, number of entries to add N, purge 0|1, then N session/auth-fields
 * pairs, then the sessions to remove). Returns {number of expired entries E, E session/auth-fields pairs, then the
 * sessions of the added ones that had no entry}.
 */
export const PRESENCE_UPDATE_SCRIPT = `-- Shoal presence write (extension E3): add or rewrite entries, remove others, in one atomic step.
-- KEYS[1]  the entries (hash)       shoal:presence:<tagged>          session id -> auth fields (JSON)
-- KEYS[2]  the expiries (zset)      shoal:presence-expiry:<tagged>   session id -> expiry (ms, Redis time)
-- ARGV[1]  ttl in milliseconds (integer >= 1): an entry expires this long after its last write
-- ARGV[2]  N, the number of entries to add or rewrite
-- ARGV[3]  1: remove the expired entries of other sessions first and return them; 0: leave them
-- ARGV[4 .. 3 + 2N]  session id, auth fields, ... ; ARGV[4 + 2N ..] the session ids to remove
local entries, expiries = KEYS[1], KEYS[2]
local ttl, n, purge = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
if #KEYS ~= 2 then return redis.error_reply('ERR shoal presence: expected 2 keys (entries, expiries)') end
if not ttl or ttl < 1 or ttl % 1 ~= 0 then return redis.error_reply('ERR shoal presence: ttl must be an integer >= 1 (milliseconds)') end
if not n or n < 0 or n % 1 ~= 0 or #ARGV < 3 + 2 * n then return redis.error_reply('ERR shoal presence: bad entry count') end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local reply = {0}
if purge then
  local adding = {}
  for i = 1, n do adding[ARGV[2 + 2 * i]] = true end
  local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now)
  for _, session in ipairs(expired) do
    if not adding[session] then
      local user = redis.call('HGET', entries, session)
      if user then
        reply[#reply + 1] = session
        reply[#reply + 1] = user
        reply[1] = reply[1] + 1
      end
      redis.call('HDEL', entries, session)
      redis.call('ZREM', expiries, session)
    end
  end
end

local at = now + ttl
for i = 1, n do
  local session, user = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  if redis.call('HSET', entries, session, user) == 1 then reply[#reply + 1] = session end
  redis.call('ZADD', expiries, at, session)
end
for i = 4 + 2 * n, #ARGV do
  redis.call('HDEL', entries, ARGV[i])
  redis.call('ZREM', expiries, ARGV[i])
end
-- The keys outlive their longest entry by one more ttl, so a late reader still finds (and announces) expired
-- entries; then they go by themselves once nobody writes.
if n > 0 then
  if redis.call('PTTL', entries) < 2 * ttl then redis.call('PEXPIRE', entries, 2 * ttl) end
  if redis.call('PTTL', expiries) < 2 * ttl then redis.call('PEXPIRE', expiries, 2 * ttl) end
end
return reply
`;

/**
 * Removes the expired entries (KEYS entries, expiries) and returns them as session/auth-fields pairs. A read runs it,
 * then `HVALS` of the entries: a plain command, which costs Redis a third of what the same values do through Lua.
 */
export const PRESENCE_PURGE_SCRIPT = `-- Shoal presence purge (extension E3): remove the entries whose node stopped rewriting them, and return them
-- as session id, auth fields, ... so that the caller announces their leave (once: the script removes them).
-- KEYS[1..2]  as for the write script: entries (hash), expiries (zset)
local entries, expiries = KEYS[1], KEYS[2]
if #KEYS ~= 2 then return redis.error_reply('ERR shoal presence: expected 2 keys (entries, expiries)') end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local gone = {}
for _, session in ipairs(redis.call('ZRANGEBYSCORE', expiries, '-inf', now)) do
  local user = redis.call('HGET', entries, session)
  if user then
    gone[#gone + 1] = session
    gone[#gone + 1] = user
  end
  redis.call('HDEL', entries, session)
end
redis.call('ZREMRANGEBYSCORE', expiries, '-inf', now)
return gone
`;

/** `HVALS` through a script, for a link that cannot send the command itself (slower: the values pass through Lua). */
export const PRESENCE_VALUES_SCRIPT = "return redis.call('HVALS', KEYS[1])";

export const presenceUpdateScript: LuaScript = luaScript(PRESENCE_UPDATE_SCRIPT);
export const presencePurgeScript: LuaScript = luaScript(PRESENCE_PURGE_SCRIPT);
export const presenceValuesScript: LuaScript = luaScript(PRESENCE_VALUES_SCRIPT);

/**
 * The presence keys of a full Redis channel (channel prefix + subscription name), tagged as the history keys are
 * (`historyKeys`): the channel as is when it holds a hash tag, else wrapped in one.
 */
export function presenceKeys(channel: string): PresenceKeys {
  const tagged = hasHashTag(channel) ? channel : `{${channel}}`;
  return { entries: `${PRESENCE_KEY_PREFIX}:${tagged}`, expiries: `${PRESENCE_KEY_PREFIX}-expiry:${tagged}` };
}

/**
 * The ARGV of the write script calls for one change: entries in batches of `PRESENCE_BATCH`, the removals and the
 * purge of expired entries in the last call (so no entry of an earlier batch is taken for expired).
 */
export function presenceUpdateArgs(change: PresenceChange): string[][] {
  const ttl = String(Math.max(1, Math.round(change.ttl * 1000)));
  const calls: string[][] = [];
  for (let start = 0; start < change.add.length || calls.length === 0; start += PRESENCE_BATCH) {
    const batch = change.add.slice(start, start + PRESENCE_BATCH);
    const last = start + PRESENCE_BATCH >= change.add.length;
    const args = [ttl, String(batch.length), last ? "1" : "0"];
    for (const entry of batch) args.push(entry.session, entry.user);
    if (last) args.push(...change.remove);
    calls.push(args);
  }
  return calls;
}

/** The write script's replies, one per call: the expired entries and the sessions that had no entry. */
export function parsePresenceUpdate(replies: readonly unknown[]): PresenceExpiry & { restored: string[] } {
  const expired: PresenceEntry[] = [];
  const restored: string[] = [];
  for (const reply of replies) {
    if (!Array.isArray(reply) || typeof reply[0] !== "number" || reply.length < 1 + 2 * reply[0]) {
      throw new Error(`unexpected reply from the presence write script: ${preview(reply)}`);
    }
    const count = reply[0];
    expired.push(...entries(reply.slice(1, 1 + 2 * count)));
    for (const session of reply.slice(1 + 2 * count)) if (typeof session === "string") restored.push(session);
  }
  return { expired, restored };
}

/**
 * A read: the purge script's reply (the expired entries it removed) and the entries' values (`HVALS`). Every value
 * is a session; each distinct one is parsed once, and kept if it is a JSON object (not Shoal's writing otherwise).
 */
export function parsePresenceRead(purged: unknown, values: unknown): PresenceSnapshot & PresenceExpiry {
  if (!Array.isArray(purged) || purged.length % 2 !== 0) {
    throw new Error(`unexpected reply from the presence purge script: ${preview(purged)}`);
  }
  if (!Array.isArray(values)) throw new Error(`unexpected reply to HVALS: ${preview(values)}`);
  const users: PresenceUser[] = [];
  for (const text of new Set(values)) {
    const fields = typeof text === "string" ? userFields(text) : undefined;
    if (fields) users.push({ text, fields });
  }
  return { count: values.length, users, expired: entries(purged) };
}

/** Session/auth-fields pairs, the auth fields checked to be a JSON object. */
function entries(pairs: readonly unknown[]): PresenceEntry[] {
  const found: PresenceEntry[] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const [session, user] = [pairs[i], pairs[i + 1]];
    if (typeof session === "string" && typeof user === "string" && userFields(user)) found.push({ session, user });
  }
  return found;
}

function userFields(text: string): Readonly<Record<string, unknown>> | undefined {
  const json = parseJson(text);
  const value = json.ok ? json.value : undefined;
  return value !== null && typeof value === "object" && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
}

function preview(reply: unknown): string {
  return (JSON.stringify(reply) ?? String(reply)).slice(0, 200);
}
