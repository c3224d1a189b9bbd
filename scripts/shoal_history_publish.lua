-- Shoal history publish (extension E1): append a message to a subscription's history and publish it to the
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
