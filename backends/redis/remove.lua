-- ARGV: qp, id. Removes a job that is not active; returns 1, or 0 when absent or active. A job
-- whose key holds another type than a hash (corrupted) is removed too.
local cur = job_fields(ARGV[2], 'st')
if cur and (not cur[1] or cur[1] == 'active') then
  return 0
end
delete_job(ARGV[2])
return 1
