-- ARGV: qp, include delayed ('1'/'0'), chunk. Removes up to chunk waiting (then delayed) jobs;
-- returns how many (the caller repeats until 0).
local chunk = tonumber(ARGV[3])
local removed = 0
local members = redis.call('ZRANGE', K_wait, 0, chunk - 1)
local gone = {}
for _, m in ipairs(members) do
  gone[#gone + 1] = wid(m)
end
if #members > 0 then
  redis.call('ZREM', K_wait, unpack(members))
end
removed = #members
if removed < chunk and redis.call('HEXISTS', K_meta, 'gon') == 1 then
  for _, g in ipairs(redis.call('HKEYS', ARGV[1] .. 'gsv')) do
    if removed >= chunk then
      break
    end
    local set = ARGV[1] .. 'gw:' .. g
    local grouped = redis.call('ZRANGE', set, 0, chunk - removed - 1)
    if #grouped > 0 then
      redis.call('ZREM', set, unpack(grouped))
      redis.call('HINCRBY', K_meta, 'gwn', -#grouped)
      for _, m in ipairs(grouped) do
        gone[#gone + 1] = wid(m)
      end
      removed = removed + #grouped
    end
  end
end
if ARGV[2] == '1' and removed < chunk then
  local ids = redis.call('ZRANGE', K_delayed, 0, chunk - removed - 1)
  for _, m in ipairs(ids) do
    gone[#gone + 1] = wid(m)
  end
  if #ids > 0 then
    redis.call('ZREM', K_delayed, unpack(ids))
  end
  removed = removed + #ids
end
delete_jobs(gone)
return removed
