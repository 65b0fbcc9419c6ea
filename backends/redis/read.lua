-- ARGV: qp, what, now. Reads only (declared no-writes: it runs over maxmemory, where Redis
-- refuses MULTI/EXEC altogether), one consistent look at the queue.
-- counts: {ZCARD of wait, active, delayed, wc, completed, failed}
-- workers: {id, info json, ...} of the workers whose registration has not expired at now
-- schedules: {key, definition json, next run, ...} of the schedules that have a next run
local what = ARGV[2]
if what == 'counts' then
  return {
    waiting_count(),
    redis.call('ZCARD', K_active),
    redis.call('ZCARD', K_delayed),
    redis.call('ZCARD', K_wc),
    redis.call('ZCARD', K_completed),
    redis.call('ZCARD', K_failed),
  }
end
local out = {}
if what == 'workers' then
  local live = redis.call('ZRANGEBYSCORE', K_workers, '(' .. ARGV[3], '+inf')
  for _, id in ipairs(live) do
    local info = redis.call('HGET', K_workers_info, id)
    if info then
      out[#out + 1] = id
      out[#out + 1] = info
    end
  end
elseif what == 'schedules' then
  local defs = redis.call('HGETALL', K_sched)
  for i = 1, #defs, 2 do
    local nxt = redis.call('HGET', K_sched_next, defs[i])
    if nxt then
      out[#out + 1] = defs[i]
      out[#out + 1] = defs[i + 1]
      out[#out + 1] = nxt
    end
  end
end
return out
