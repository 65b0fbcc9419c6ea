-- ARGV: qp, id. Removes a job that is not active; returns 1, or 0 when absent or active.
local st = redis.call('HGET', jk(ARGV[2]), 'st')
if not st or st == 'active' then
  return 0
end
delete_job(ARGV[2])
return 1
