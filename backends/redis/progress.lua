-- ARGV: qp, id, progress json. Returns 1, or 0 when the job does not exist.
local cur = job_fields(ARGV[2], 'st')
if not cur or not cur[1] then
  return 0
end
redis.call('HSET', jk(ARGV[2]), 'pg', ARGV[3])
event('progress', ARGV[2], 'progress', ARGV[3])
return 1
