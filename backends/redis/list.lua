-- ARGV: qp, state, start, end. Returns {id, FIELDS..., ...}: waiting in fetch order, delayed
-- by due time, active all of them (the caller orders them by start), finished newest first.
local state, start, stop = ARGV[2], ARGV[3], ARGV[4]
local ids
if state == 'waiting' then
  ids = redis.call('ZRANGE', K_wait, start, stop)
  for i = 1, #ids do
    ids[i] = wid(ids[i])
  end
elseif state == 'delayed' then
  ids = redis.call('ZRANGE', K_delayed, start, stop)
  for i = 1, #ids do
    ids[i] = wid(ids[i])
  end
elseif state == 'waiting-children' then
  ids = redis.call('ZRANGE', K_wc, start, stop)
elseif state == 'active' then
  ids = redis.call('ZRANGE', K_active, 0, -1)
elseif state == 'completed' then
  ids = redis.call('ZREVRANGE', K_completed, start, stop)
else
  ids = redis.call('ZREVRANGE', K_failed, start, stop)
end
local out = {}
for _, id in ipairs(ids) do
  local vals = job_fields(id, unpack(FIELDS))
  if not vals or not vals[F['st']] then
    -- a key of another type, or no hash: listed in the state of its set, with the reason
    local reason = vals and MISSING or NOT_A_HASH
    vals = {}
    for j = 1, #FIELDS do
      vals[j] = false
    end
    vals[F['st']] = state
    vals[F['fr']] = reason
  end
  emit(out, id, vals)
end
return out
