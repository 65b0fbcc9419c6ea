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
