-- ARGV: qp, id, now. Moves a delayed job to waiting now; 1 or 0.
local id = ARGV[2]
local cur = redis.call('HMGET', jk(id), 'st', 'p', 'wm')
if cur[1] ~= 'delayed' then
  return 0
end
redis.call('ZREM', K_delayed, cur[3])
redis.call('HSET', jk(id), 'ra', ARGV[3])
to_waiting(id, cur[2], false)
wake()
return 1
