-- ARGV: qp, now, max_stalls, reason, default failed-retention count
-- Returns {id, failed (0/1), ...} for each job whose lease expired.
local now, max_stalls = ARGV[2], tonumber(ARGV[3])
NOW = now
local expired = redis.call('ZRANGEBYSCORE', K_active, '-inf', us(now), 'LIMIT', 0, 1000)
local out = {}
for _, id in ipairs(expired) do
  local key = jk(id)
  redis.call('ZREM', K_active, id)
  local cur = job_fields(id, 'st', 'sc', 'g')
  local stalls = false
  if cur then
    group_left(cur[3])
  end
  if cur and cur[1] then
    if cur[2] and not string.match(cur[2], '^%d+$') then
      redis.call('HSET', key, 'sc', 0) -- corrupted: count again (HINCRBY would fail)
    end
    stalls = redis.call('HINCRBY', key, 'sc', 1)
  end
  if not stalls then
    fail_broken(id, cur, now)
    out[#out + 1] = id
    out[#out + 1] = 1
  elseif stalls > max_stalls then
    redis.call('HSET', key, 'st', 'failed', 'fr', ARGV[4], 'fo', now, 'tk', '', 'lu', '')
    redis.call('ZADD', K_failed, us(now), id)
    job_ended(id, 'failed', ARGV[4], now)
    local count, cutoff = tonumber(ARGV[5]), false
    local ok, opts = pcall(cjson.decode, redis.call('HGET', key, 'o') or '{}')
    local keep = ok and type(opts) == 'table' and opts['remove_on_fail']
    if type(keep) == 'table' then
      count = type(keep['count']) == 'number' and keep['count'] or false
      if type(keep['age']) == 'number' then
        cutoff = num(tonumber(now) - keep['age'])
      end
    end
    retain(K_failed, count, cutoff)
    event('stalled', id, 'failed', '1')
    out[#out + 1] = id
    out[#out + 1] = 1
  else
    redis.call('HSET', key, 'tk', '', 'lu', '')
    to_waiting(id, redis.call('HGET', key, 'p'), false, cur[3])
    event('stalled', id, 'failed', '0')
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
if #out > 0 then
  wake()
end
return out
