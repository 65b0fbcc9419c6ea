-- ARGV: qp, id. Moves a failed job back to waiting with its attempts reset; 1 or 0.
local id = ARGV[2]
local cur = job_fields(id, 'st', 'p', 'g')
if not cur or cur[1] ~= 'failed' then
  return 0
end
redis.call('ZREM', K_failed, id)
redis.call('HSET', jk(id), 'am', 0, 'sc', 0)
redis.call('HDEL', jk(id), 'fr', 'tr', 'fo', 'po', 'cx')
to_waiting(id, cur[2], false, cur[3])
wake()
return 1
