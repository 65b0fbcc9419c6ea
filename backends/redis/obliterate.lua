-- ARGV: qp, chunk. Deletes up to chunk jobs of the queue; once none is left, deletes the queue's
-- fixed keys too. Returns the number of jobs deleted (the caller repeats until 0).
local chunk = tonumber(ARGV[2])
local deleted = 0
local sets, queued = {K_wait}, {[K_wait] = true, [K_delayed] = true}
local groups = redis.call('HKEYS', ARGV[1] .. 'gsv')
for _, g in ipairs(groups) do
  local set = ARGV[1] .. 'gw:' .. g
  sets[#sets + 1] = set
  queued[set] = true
end
for _, set in ipairs({K_delayed, K_active, K_wc, K_completed, K_failed}) do
  sets[#sets + 1] = set
end
for _, set in ipairs(sets) do
  if deleted >= chunk then
    break
  end
  local members = redis.call('ZRANGE', set, 0, chunk - deleted - 1)
  local ids = {}
  for _, m in ipairs(members) do
    local id = m
    if queued[set] then
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
  local seen = {}
  for _, list in ipairs({groups, redis.call('ZRANGE', ARGV[1] .. 'ghold', 0, -1),
      redis.call('HKEYS', ARGV[1] .. 'gact')}) do
    for _, g in ipairs(list) do
      if not seen[g] then
        seen[g] = true
        redis.call('DEL', ARGV[1] .. 'gst:' .. g, ARGV[1] .. 'gw:' .. g)
      end
    end
  end
  redis.call('DEL', ARGV[1] .. 'gring', ARGV[1] .. 'gsv', ARGV[1] .. 'gact', ARGV[1] .. 'ghold')
  redis.call('DEL', ARGV[1] .. 'windows', ARGV[1] .. 'metrics', unpack(KEYS))
end
return deleted
