-- ARGV: qp, state, cutoff, limit (0: none). Removes jobs in state finished (completed/failed)
-- or created (waiting/delayed) at or before cutoff, oldest first. Returns their ids.
local state, cutoff, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local removed = {}
local function full()
  return limit > 0 and #removed >= limit
end
if state == 'completed' or state == 'failed' then
  local set = state == 'completed' and K_completed or K_failed
  local ids
  if limit > 0 then
    ids = redis.call('ZRANGEBYSCORE', set, '-inf', us(cutoff), 'LIMIT', 0, limit)
  else
    ids = redis.call('ZRANGEBYSCORE', set, '-inf', us(cutoff))
  end
  for _, id in ipairs(ids) do
    redis.call('ZREM', set, id)
    removed[#removed + 1] = id
  end
  delete_jobs(removed)
  return removed
end
local members
if state == 'waiting-children' then
  members = redis.call('ZREVRANGE', K_wc, 0, -1)
  for i = 1, #members do
    members[i] = '00000000000000' .. members[i] -- the shape wid() reads: 14 characters, then id
  end
elseif state == 'waiting' then
  members = redis.call('ZREVRANGE', K_wait, 0, -1)
  for _, g in ipairs(redis.call('HKEYS', ARGV[1] .. 'gsv')) do
    for _, m in ipairs(redis.call('ZREVRANGE', ARGV[1] .. 'gw:' .. g, 0, -1)) do
      members[#members + 1] = m
    end
  end
else
  members = redis.call('ZREVRANGE', K_delayed, 0, -1)
end
local limit_cutoff = tonumber(cutoff)
for _, m in ipairs(members) do
  if full() then
    break
  end
  local id = wid(m)
  local cur = job_fields(id, 'ts')
  local ts = cur and tonumber(cur[1])
  if ts and ts <= limit_cutoff then
    delete_job(id)
    removed[#removed + 1] = id
  end
end
return removed
