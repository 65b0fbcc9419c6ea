-- ARGV: qp, state, start, end. Returns {id, FIELDS..., ...}: waiting in fetch order, delayed
-- by due time, active all of them (the caller orders them by start), finished newest first.
local state, start, stop = ARGV[2], ARGV[3], ARGV[4]
local ids
if state == 'waiting' and redis.call('HEXISTS', K_meta, 'gon') == 1 then
  -- with groups: the jobs without a group, then each group's (groups by name), each in its
  -- own order (which job of which group comes next depends on the turns)
  local sets, sizes, total = {K_wait}, {}, 0
  local groups = redis.call('HKEYS', ARGV[1] .. 'gsv')
  table.sort(groups)
  for _, g in ipairs(groups) do
    sets[#sets + 1] = ARGV[1] .. 'gw:' .. g
  end
  for i, set in ipairs(sets) do
    sizes[i] = redis.call('ZCARD', set)
    total = total + sizes[i]
  end
  local a, z = tonumber(start), tonumber(stop)
  if a < 0 then
    a = math.max(total + a, 0)
  end
  if z < 0 then
    z = total + z
  end
  ids = {}
  local offset = 0
  for i, set in ipairs(sets) do
    if offset > z then
      break
    end
    if z - offset >= 0 and a - offset < sizes[i] then
      for _, m in ipairs(redis.call('ZRANGE', set, math.max(a - offset, 0), z - offset)) do
        ids[#ids + 1] = wid(m)
      end
    end
    offset = offset + sizes[i]
  end
elseif state == 'waiting' then
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
