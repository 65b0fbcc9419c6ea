-- ARGV: qp, now, n, then n nodes, each: queue, has_job ('1'/'0'), id ('' to number it), name,
--   data, opts, ts, run_at, priority, lifo, policy ('' for wait), group ('' for none), k, then
--   k child indexes (1-based, of earlier nodes: children come before their parents).
-- Adds every node and edge, or nothing: returns {'err', message} when a reference names a
-- missing job or an existing job is given children; else {'ok', {id, added, ...}, {queues
-- registered just now}}.
local now = ARGV[2]
local n = tonumber(ARGV[3])
local nodes = {}
local b = 4
for i = 1, n do
  local k = tonumber(ARGV[b + 12])
  local node = {queue = ARGV[b], has_job = ARGV[b + 1] == '1', id = ARGV[b + 2], at = b,
    kids = {}}
  for j = 1, k do
    node.kids[j] = tonumber(ARGV[b + 12 + j])
  end
  node.base = base_of(node.queue)
  node.exists = node.id ~= '' and redis.call('EXISTS', node.base .. 'j:' .. node.id) == 1
  if not node.has_job and not node.exists then
    return {'err', 'job ' .. node.queue .. ':' .. node.id .. ' of the flow does not exist'}
  end
  if node.exists and k > 0 then
    return {'err', 'job ' .. node.queue .. ':' .. node.id ..
      ' already exists: a flow cannot give it children'}
  end
  nodes[i] = node
  b = b + 13 + k
end

local registered, results, seen = {}, {}, {}
local function touch(node)
  if not seen[node.queue] then
    seen[node.queue] = true
    local meta = node.base .. 'meta'
    if redis.call('HSETNX', meta, 'reg', 1) == 1 then
      registered[#registered + 1] = node.queue
    end
    redis.call('HSET', meta, 'fl', 1)
  end
end

-- Store a new node in its queue: waiting-children when it has children, else as add_job would.
local function store(node)
  local a, base = node.at, node.base
  local id = node.id
  if id == '' then
    repeat
      id = tostring(redis.call('HINCRBY', base .. 'meta', 'id', 1))
    until redis.call('EXISTS', base .. 'j:' .. id) == 0
  end
  local key = base .. 'j:' .. id
  local name, ts, run_at, prio = ARGV[a + 3], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  redis.call('HSET', key, 'n', name, 'd', ARGV[a + 4], 'o', ARGV[a + 5], 'ts', ts, 'ra', run_at,
    'p', prio, 'am', 0, 'as', 0, 'sc', 0)
  if ARGV[a + 10] ~= '' then
    redis.call('HSET', key, 'fp', ARGV[a + 10])
  end
  local g = ARGV[a + 11] ~= '' and ARGV[a + 11] or false
  if g then
    redis.call('HSET', key, 'g', g)
    redis.call('HSET', base .. 'meta', 'gon', 1)
  end
  local state
  if #node.kids > 0 then
    state = 'waiting-children'
    local delay = tonumber(run_at) - tonumber(ts)
    redis.call('HSET', key, 'st', state, 'pd', delay > 0 and num(delay) or 0)
    redis.call('ZADD', base .. 'wc', us(ts), id)
  else
    local s = redis.call('HINCRBY', base .. 'meta', 'seq', 1)
    if tonumber(run_at) > tonumber(now) then
      state = 'delayed'
      local m = string.format('1%013x', s) .. id
      redis.call('ZADD', base .. 'delayed', run_at, m)
      redis.call('HSET', key, 'st', state, 'wm', m)
    else
      state = 'waiting'
      local m
      if ARGV[a + 9] == '1' then
        m = string.format('0%013x', LIFO_TOP - s) .. id
      else
        m = string.format('1%013x', s) .. id
      end
      if g then
        group_wait_at(base, g, prio, m)
      else
        redis.call('ZADD', base .. 'wait', prio, m)
      end
      redis.call('HSET', key, 'st', state, 'wm', m)
    end
    redis.call('ZADD', base .. 'marker', 0, WAKE_MEMBER)
  end
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'added',
    'id', id, 'name', name, 'state', state)
  return id
end

local failed = {}
for i = 1, n do
  local node = nodes[i]
  touch(node)
  local added = 0
  if not node.exists then
    node.id = store(node)
    added = 1
  end
  node.ref = node.queue .. ' ' .. node.id
  results[#results + 1] = node.id
  results[#results + 1] = added
  if added == 1 and #node.kids > 0 then
    local dp, dv = node.base .. 'dp:' .. node.id, node.base .. 'dv:' .. node.id
    local broken = {}
    for _, k in ipairs(node.kids) do
      local child = nodes[k]
      local ckey = child.base .. 'j:' .. child.id
      local cur = redis.call('HMGET', ckey, 'st', 'rv', 'fr')
      redis.call('SADD', child.base .. 'pa:' .. child.id, node.ref)
      redis.call('HSET', ckey, 'pa', '1')
      if cur[1] == 'completed' then
        redis.call('HSET', dv, child.ref, cur[2] or 'null')
      else
        redis.call('SADD', dp, child.ref)
        if cur[1] == 'failed' then
          broken[#broken + 1] = {child.ref, cur[3] or ''}
        end
      end
    end
    for _, item in ipairs(broken) do
      cascade({item}, now, failed, node.ref)
    end
    release_if_done(node.ref, now)
  end
end
retain_failed(failed, now)
return {'ok', results, registered}
