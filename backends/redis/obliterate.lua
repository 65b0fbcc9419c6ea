-- ARGV: qp, chunk. Deletes up to chunk jobs of the queue; once none is left, deletes the queue's
-- fixed keys too. Returns the number of jobs deleted (the caller repeats until 0).
local chunk = tonumber(ARGV[2])
local deleted = 0
for _, set in ipairs({K_wait, K_delayed, K_active, K_wc, K_completed, K_failed}) do
  if deleted >= chunk then
    break
  end
  local members = redis.call('ZRANGE', set, 0, chunk - deleted - 1)
  local ids = {}
  for _, m in ipairs(members) do
    local id = m
    if set == K_wait or set == K_delayed then
      id = wid(m)
    end
    ids[#ids + 1] = id
  end
  if #members > 0 then
    redis.call('ZREM', set, unpack(members))
  end
  delete_jobs(ids)
  deleted = deleted + #members
end
if deleted == 0 then
  for _, w in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'windows')) do
    redis.call('DEL', ARGV[1] .. 'de:' .. w)
  end
  redis.call('DEL', ARGV[1] .. 'windows', ARGV[1] .. 'metrics', unpack(KEYS))
end
return deleted
