-- ARGV: qp, id, now. Moves a delayed job to waiting now; 1 or 0.
local id = ARGV[2]
local cur = job_fields(id, 'st', 'p', 'wm', 'g')
if not cur or cur[1] ~= 'delayed' then
  return 0
end
redis.call('ZREM', K_delayed, cur[3])
redis.call('HSET', jk(id), 'ra', ARGV[3])
to_waiting(id, cur[2], false, cur[4])
wake()
return 1
