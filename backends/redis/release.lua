-- ARGV: qp, token, mode ('all' or 'ids'), ids... Returns the ids released (to the front).
local token = ARGV[2]
local ids = {}
if ARGV[3] == 'all' then
  ids = redis.call('ZRANGE', K_active, 0, -1)
else
  for i = 4, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end
local released = {}
for _, id in ipairs(ids) do
  local cur = job_fields(id, 'st', 'tk', 'p', 'g')
  if cur and cur[1] == 'active' and cur[2] == token then
    redis.call('ZREM', K_active, id)
    redis.call('HSET', jk(id), 'tk', '', 'lu', '')
    group_left(cur[4])
    to_waiting(id, cur[3], true, cur[4])
    released[#released + 1] = id
  end
end
if #released > 0 then
  wake()
end
return released
