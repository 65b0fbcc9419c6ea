-- ARGV: qp, 'cancel', id, reason, now: a waiting or delayed job fails now (no retry, attempts
-- unchanged, its parents and window settled as for any final failure): 'failed'; an active
-- job gets the cancel request cx = reason: 'requested'; any other job: false.
-- ARGV: qp, 'requests', ids...: {id, reason, ...} of those ids with a cancel request.
if ARGV[2] == 'requests' then
  local out = {}
  for i = 3, #ARGV do
    local v = redis.pcall('HGET', jk(ARGV[i]), 'cx')
    if type(v) == 'string' then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = v
    end
  end
  return out
end
local id, reason, now = ARGV[3], ARGV[4], ARGV[5]
NOW = now
local cur = job_fields(id, 'st', 'wm', 'g')
if not cur or not cur[1] then
  return false
end
if cur[1] == 'active' then
  redis.call('HSET', jk(id), 'cx', reason)
  event('cancel-requested', id, 'reason', reason)
  return 'requested'
end
if cur[1] ~= 'waiting' and cur[1] ~= 'delayed' then
  return false
end
unlink(id, cur[1], cur[2], cur[3])
redis.call('HSET', jk(id), 'st', 'failed', 'fr', reason, 'fo', now, 'tk', '', 'lu', '')
redis.call('HDEL', jk(id), 'tr')
redis.call('ZADD', K_failed, us(now), id)
event('failed', id, 'failed_reason', reason)
event('cancelled', id, 'reason', reason)
job_ended(id, 'failed', reason, now)
flush_wake()
return 'failed'
