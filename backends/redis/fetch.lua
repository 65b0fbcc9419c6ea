-- ARGV: qp, token, limit, now, lease_until, rid, then the rids of earlier requests whose
-- replies were lost (their jobs are handed back first; see recover). With now '', the time is
-- the server's clock and lease_until is the lease in seconds: a fetch sent right behind a
-- blocking wait runs when the wait ends, when a time the caller computed would be stale.
-- Returns {when to look again or nil, id, FIELDS..., id, FIELDS..., ...}: with no job taken,
-- the next delayed due time or the time the rate limiter lets a job start, the earlier.
local token = ARGV[2]
recover(token, 7, #ARGV)
local now, lease_until = ARGV[4], ARGV[5]
if now == '' then
  now = clock()
  lease_until = num(tonumber(now) + tonumber(lease_until))
end
local out, frees_at, capped = take(token, tonumber(ARGV[3]), now, lease_until, ARGV[6])
pass_wake_on(#out, capped)
flush_wake()
local due = false
if #out == 0 then
  due = next_due(frees_at)
end
table.insert(out, 1, due)
return out
