-- ARGV: qp, token, lease_until, ids... Returns the ids not owned by token.
local token, until_ = ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local cur = job_fields(id, 'st', 'tk')
  if cur and cur[1] == 'active' and cur[2] == token then
    redis.call('ZADD', K_active, 'XX', us(until_), id)
    redis.call('HSET', jk(id), 'lu', until_)
  else
    lost[#lost + 1] = id
  end
end
return lost
