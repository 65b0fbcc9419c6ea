-- ARGV: qp, id, line, keep. Returns the number of lines kept (0 when the job does not exist).
local id, keep = ARGV[2], tonumber(ARGV[4])
local cur = job_fields(id, 'st')
if not cur or not cur[1] then
  return 0
end
local n = redis.call('RPUSH', lk(id), ARGV[3])
if keep > 0 and n > keep then
  redis.call('LTRIM', lk(id), -keep, -1)
  n = keep
end
return n
