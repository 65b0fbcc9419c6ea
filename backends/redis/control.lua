-- The control channel (a global key, not a queue's: no header keys apply).
-- KEYS[1]: the control sorted set (score = time, member = JSON [time, command, payload]).
-- ARGV: now, command, payload json, keep. Stores a message at max(now, last + 1 us), so times
-- strictly increase even within one clock tick and across processes, and keeps the newest
-- keep. Returns its time (a string that reads back as the exact float).
local key = KEYS[1]
local at = tonumber(ARGV[1])
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] and at <= tonumber(last[2]) then
  at = tonumber(last[2]) + 0.000001
end
local text = string.format('%.17g', at)
redis.call('ZADD', key, text, cjson.encode({text, ARGV[2], ARGV[3]}))
redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[4]) + 1))
return text
