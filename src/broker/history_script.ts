import { createHash } from "node:crypto";
import type { Appended, HistoryEntry, HistoryOptions, HistoryState } from "./broker.ts";

/**
 * The Redis side of history and recovery (extension E1), shared by the redis, redis-cluster and upstash brokers:
 * key names and the two Lua scripts. A subscription's history is a Redis Stream (entry ID `<offset>-0`, fields
 * `message` and, when given, `key`), a small hash of its epoch and newest offset, and a hash of the idempotency
 * keys of the stored messages. Only the scripts write them, so an append and its publish are one atomic step.
 */

/** A Lua script and its SHA-1 (for EVALSHA). */
export interface LuaScript {
  readonly source: string;
  readonly sha1: string;
}

/** How an append publishes: SPUBLISH on a sharded Redis Cluster, PUBLISH everywhere else. */
export type PublishCommand = "PUBLISH" | "SPUBLISH";

/** The keys of one subscription's history: one cluster slot, the channel's. */
export interface HistoryKeys {
  readonly stream: string;
  readonly meta: string;
  readonly idempotency: string;
}

/** The key prefix; it holds no `{`, so a key's hash tag is the one of its channel part. */
export const HISTORY_KEY_PREFIX = "shoal:history";

/**
 * Appends and publishes (KEYS stream, meta, idempotency; ARGV channel, message, size, ttl ms, PUBLISH|SPUBLISH,
 * [idempotency key]; returns {offset, epoch, duplicate 0|1}). Shipped for services as
 * scripts/shoal_history_publish.lua, byte for byte: its header documents it.
 */
export const HISTORY_PUBLISH_SCRIPT =
  `-- Shoal history publish (extension E1): append a message to a subscription's history and publish it to the
-- subscription's channel, in one atomic step. Safe to run from any number of publishers at once.
-- Shoal runs this same script for POST /publish (src/broker/history_script.ts holds it byte for byte).
--
-- KEYS[1]  the history stream           shoal:history:<tagged>
-- KEYS[2]  the history metadata (hash)  shoal:history-meta:<tagged>   fields epoch, top
-- KEYS[3]  the idempotency keys (hash)  shoal:history-idem:<tagged>   idempotency key -> offset
--   <channel> is the full Redis channel: Shoal's channel prefix + the subscription name.
--   <tagged> is <channel> itself when it holds a Redis Cluster hash tag (its first "{" followed later by a "}",
--   with at least one character between them), else "{" .. <channel> .. "}". So the keys and the channel share
--   one cluster slot. The script refuses other key names. With SPUBLISH a channel with a "}" but no hash tag
--   cannot have a history (its keys would not be on its slot).
-- ARGV[1]  <channel>
-- ARGV[2]  the message: JSON text, exactly what a plain PUBLISH would carry
-- ARGV[3]  size: how many messages the history keeps (integer >= 1), as in Shoal's config
-- ARGV[4]  ttl in milliseconds (integer >= 1): the history expires this long after its last append
-- ARGV[5]  PUBLISH, or SPUBLISH when Shoal uses a sharded Redis Cluster (broker sharded: true)
-- ARGV[6]  optional idempotency key ("" or absent: none): a retry with a key whose message is still stored appends nothing
--
-- Publishes {"offset":<offset>,"epoch":"<epoch>","message":<message>} and returns {offset, epoch, 0}; a repeated
-- idempotency key publishes nothing and returns the first append's {offset, epoch, 1}. Offsets grow by 1 per
-- message from 1; a history that expired or was lost (Redis flushed or restarted without persistence) starts
-- again at 1 under a new epoch.
--
-- Example, one command (a subscription chat.1, no channel prefix, size 100, ttl 300 s):
--   redis-cli --eval shoal_history_publish.lua shoal:history:{chat.1} shoal:history-meta:{chat.1}
--     shoal:history-idem:{chat.1} , chat.1 '{"subscription":"chat.1","data":1}' 100 300000 PUBLISH
local stream, meta, idem = KEYS[1], KEYS[2], KEYS[3]
local channel, message, command, key = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
if key == '' then key = nil end
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if #KEYS ~= 3 then return redis.error_reply('ERR shoal history: expected 3 keys (stream, meta, idempotency)') end
if channel == nil or message == nil then return redis.error_reply('ERR shoal history: expected a channel and a message') end
if not size or size < 1 or size % 1 ~= 0 then return redis.error_reply('ERR shoal history: size must be an integer >= 1') end
if not ttl or ttl < 1 or ttl % 1 ~= 0 then return redis.error_reply('ERR shoal history: ttl must be an integer >= 1 (milliseconds)') end
if command ~= 'PUBLISH' and command ~= 'SPUBLISH' then return redis.error_reply('ERR shoal history: ARGV[5] must be PUBLISH or SPUBLISH') end
-- Checked before any write: Redis does not undo the writes of a script that fails half-way.
local open = string.find(channel, '{', 1, true)
local close = open and string.find(channel, '}', open + 1, true)
local tagged = (close and close > open + 1) and channel or '{' .. channel .. '}'
if stream ~= 'shoal:history:' .. tagged or meta ~= 'shoal:history-meta:' .. tagged or idem ~= 'shoal:history-idem:' .. tagged then
  return redis.error_reply('ERR shoal history: the keys of channel ' .. channel .. ' are shoal:history:' .. tagged .. ', shoal:history-meta:' .. tagged .. ' and shoal:history-idem:' .. tagged)
end
if command == 'SPUBLISH' and tagged ~= channel and string.find(channel, '}', 1, true) then
  return redis.error_reply('ERR shoal history: with SPUBLISH a channel with a "}" needs a hash tag')
end

local epoch, top = unpack(redis.call('HMGET', meta, 'epoch', 'top'))
top = tonumber(top)
if not epoch or not top then
  -- No history (new, expired or lost): a new epoch, and nothing left over from an older one.
  redis.call('DEL', stream, idem)
  local now = redis.call('TIME')
  local n, digits = tonumber(now[1]) * 1000000 + tonumber(now[2]), '0123456789abcdefghijklmnopqrstuvwxyz'
  epoch = ''
  repeat
    local d = n % 36
    epoch = string.sub(digits, d + 1, d + 1) .. epoch
    n = (n - d) / 36
  until n == 0
  top = 0
end

-- An idempotency key is remembered as long as its message is stored.
if key then
  local seen = tonumber(redis.call('HGET', idem, key))
  if seen and seen > top - size then return {seen, epoch, 1} end
end

local offset = top + 1
if redis.call('EXISTS', idem) == 1 then
  -- Forget the keys of the messages this append trims.
  local excess = redis.call('XLEN', stream) - size + 1
  if excess > 0 then
    for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)) do
      local fields = entry[2]
      if fields[3] == 'key' and redis.call('HGET', idem, fields[4]) == string.match(entry[1], '^%d+') then
        redis.call('HDEL', idem, fields[4])
      end
    end
  end
end
local id = string.format('%d-0', offset)
if key then
  redis.call('XADD', stream, 'MAXLEN', size, id, 'message', message, 'key', key)
  redis.call('HSET', idem, key, offset)
else
  redis.call('XADD', stream, 'MAXLEN', size, id, 'message', message)
end
redis.call('HSET', meta, 'epoch', epoch, 'top', offset)
redis.call('PEXPIRE', stream, ttl)
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', idem, ttl)
redis.call(command, channel, string.format('{"offset":%d,"epoch":"%s","message":', offset, epoch) .. message .. '}')
return {offset, epoch, 0}
`;

/**
 * Reads a history (KEYS as above; ARGV size, ttl ms, [since]; returns {epoch, top, offset, message, ...}), creating
 * its epoch when it has none. Its header documents it.
 */
export const HISTORY_READ_SCRIPT =
  `-- Shoal history read (extension E1): a subscription's history position and, with a since offset, the stored
-- messages after it, in one atomic step.
--
-- KEYS[1..3]  as for the publish script (scripts/shoal_history_publish.lua): stream, metadata, idempotency keys
-- ARGV[1]     size: how many messages the history keeps (integer >= 1)
-- ARGV[2]     ttl in milliseconds (integer >= 1)
-- ARGV[3]     optional since: an offset (integer >= 0)
--
-- A missing history (new, expired or lost) gets a new epoch here, expiring after ttl unless a message is appended,
-- so a client told offset 0 can recover later. Returns {epoch, top, offset, message, offset, message, ...}: top is
-- the newest offset (0 when none), then with since the stored messages with offset > since, oldest first, at
-- most size of them (the newest ones).
local stream, meta, idem = KEYS[1], KEYS[2], KEYS[3]
local size, ttl, since = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if #KEYS ~= 3 then return redis.error_reply('ERR shoal history: expected 3 keys (stream, meta, idempotency)') end
if not size or size < 1 or size % 1 ~= 0 then return redis.error_reply('ERR shoal history: size must be an integer >= 1') end
if not ttl or ttl < 1 or ttl % 1 ~= 0 then return redis.error_reply('ERR shoal history: ttl must be an integer >= 1 (milliseconds)') end
if ARGV[3] ~= nil and (not since or since < 0 or since % 1 ~= 0) then return redis.error_reply('ERR shoal history: since must be an integer >= 0') end

local epoch, top = unpack(redis.call('HMGET', meta, 'epoch', 'top'))
top = tonumber(top)
if not epoch or not top then
  -- No history (new, expired or lost): a new epoch, and nothing left over from an older one.
  redis.call('DEL', stream, idem)
  local now = redis.call('TIME')
  local n, digits = tonumber(now[1]) * 1000000 + tonumber(now[2]), '0123456789abcdefghijklmnopqrstuvwxyz'
  epoch = ''
  repeat
    local d = n % 36
    epoch = string.sub(digits, d + 1, d + 1) .. epoch
    n = (n - d) / 36
  until n == 0
  top = 0
  redis.call('HSET', meta, 'epoch', epoch, 'top', top)
  redis.call('PEXPIRE', meta, ttl)
end

local reply = {epoch, top}
if since then
  local from = math.max(since + 1, top - size + 1)
  if from <= top then
    for _, entry in ipairs(redis.call('XRANGE', stream, string.format('%d-0', from), '+', 'COUNT', size)) do
      reply[#reply + 1] = tonumber(string.match(entry[1], '^%d+'))
      reply[#reply + 1] = entry[2][2]
    end
  end
end
return reply
`;

/** The publish script, for EVALSHA. */
export const historyPublishScript: LuaScript = luaScript(HISTORY_PUBLISH_SCRIPT);

/** The read script, for EVALSHA. */
export const historyReadScript: LuaScript = luaScript(HISTORY_READ_SCRIPT);

/** Whether a key or channel holds a Redis Cluster hash tag: its first `{`, then the first `}` after it, not adjacent. */
export function hasHashTag(name: string): boolean {
  const open = name.indexOf("{");
  return open >= 0 && name.indexOf("}", open + 1) > open + 1;
}

/**
 * The history keys of a full Redis channel (channel prefix + subscription name): the channel as is when it holds a
 * hash tag, else wrapped in one, `{channel}`, so the keys hash to the channel's slot (see `sharesChannelSlot`).
 */
export function historyKeys(channel: string): HistoryKeys {
  const tagged = hasHashTag(channel) ? channel : `{${channel}}`;
  return {
    stream: `${HISTORY_KEY_PREFIX}:${tagged}`,
    meta: `${HISTORY_KEY_PREFIX}-meta:${tagged}`,
    idempotency: `${HISTORY_KEY_PREFIX}-idem:${tagged}`,
  };
}

/**
 * Whether `historyKeys(channel)` land on the channel's cluster slot. Not for a channel with a `}` but no hash tag
 * (wrapped, its tag ends at that `}`): its keys still share a slot (unless the channel starts with `}`), which is
 * enough for PUBLISH, but SPUBLISH (sharded pub/sub) must run on the channel's slot.
 */
export function sharesChannelSlot(channel: string): boolean {
  return hasHashTag(channel) || (channel !== "" && !channel.includes("}"));
}

/** The keys, in the scripts' KEYS order. */
export function scriptKeys(keys: HistoryKeys): string[] {
  return [keys.stream, keys.meta, keys.idempotency];
}

/** ARGV of the publish script. */
export function publishArgs(
  channel: string,
  payload: string,
  history: HistoryOptions & { readonly idempotencyKey?: string },
  command: PublishCommand,
): string[] {
  const args = [channel, payload, String(history.size), String(ttlMs(history.ttl)), command];
  if (history.idempotencyKey !== undefined) args.push(history.idempotencyKey);
  return args;
}

/** ARGV of the read script. */
export function readArgs(history: HistoryOptions, since?: number): string[] {
  const args = [String(history.size), String(ttlMs(history.ttl))];
  if (since !== undefined) args.push(String(since));
  return args;
}

/** The publish script's reply `{offset, epoch, duplicate}`. */
export function parseAppended(reply: unknown): Appended {
  if (Array.isArray(reply) && reply.length === 3) {
    const [offset, epoch, duplicate] = reply;
    if (isOffset(offset) && offset >= 1 && typeof epoch === "string" && (duplicate === 0 || duplicate === 1)) {
      return { offset, epoch, duplicate: duplicate === 1 };
    }
  }
  throw new Error(`unexpected reply from the history publish script: ${preview(reply)}`);
}

/** The read script's reply `{epoch, top, offset, message, ...}`. */
export function parseHistoryState(reply: unknown): HistoryState {
  if (Array.isArray(reply) && reply.length >= 2 && reply.length % 2 === 0) {
    const [epoch, top] = reply;
    const entries: HistoryEntry[] = [];
    for (let i = 2; i < reply.length; i += 2) {
      const [offset, payload] = [reply[i], reply[i + 1]];
      if (!isOffset(offset) || typeof payload !== "string") break;
      entries.push({ offset, payload });
    }
    if (typeof epoch === "string" && isOffset(top) && entries.length === reply.length / 2 - 1) {
      return { epoch, top, entries };
    }
  }
  throw new Error(`unexpected reply from the history read script: ${preview(reply)}`);
}

/**
 * Run a script by its SHA-1, sending the source only when the server does not have it cached (NOSCRIPT: nothing
 * ran, so running it again cannot append twice).
 */
export async function runScript(
  script: LuaScript,
  evalSha: (sha1: string) => Promise<unknown>,
  evaluate: (source: string) => Promise<unknown>,
): Promise<unknown> {
  try {
    return await evalSha(script.sha1);
  } catch (error) {
    // node-redis: "NOSCRIPT …"; @upstash/redis: "NOSCRIPT …, command was: …", or "Command failed: NOSCRIPT …" when
    // auto-pipelined. Anchored: the echoed command holds the payload, which may say anything.
    if (!(error instanceof Error) || !/^(?:Error: |Command failed: )?NOSCRIPT /.test(error.message)) throw error;
    return await evaluate(script.source);
  }
}

/** A script with its SHA-1 computed here (the presence scripts use it too). */
export function luaScript(source: string): LuaScript {
  return { source, sha1: createHash("sha1").update(source, "utf8").digest("hex") };
}

/** The scripts take whole milliseconds (at least 1). */
function ttlMs(ttl: number): number {
  return Math.max(1, Math.round(ttl * 1000));
}

function isOffset(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function preview(reply: unknown): string {
  return (JSON.stringify(reply) ?? String(reply)).slice(0, 200);
}
