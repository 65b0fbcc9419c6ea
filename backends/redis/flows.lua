-- Flows and deduplication windows (after common.lua; the rules are in polyjobs.backend).
--
-- A job is named across queues by a ref, "<queue> <id>" (neither holds a space). Per job:
--   <base>pa:<id>  SET   refs of its parents          (job hash 'pa' = '1' while it has any)
--   <base>dp:<id>  SET   refs of its pending children
--   <base>dv:<id>  HASH  ref -> return value of each processed child
--   <base>di:<id>  HASH  ref -> failed reason of each ignored child
-- and in the job hash: fp its failure policy (none: wait), pd its delay after release (a
-- parent), de the deduplication id it holds. <base>de:<dedup id> is a window: HASH j (holder),
-- x (end time, '' for until the job ends), n (the kept next add, JSON). A queue whose jobs ever
-- took part in a flow or a window has meta 'fl', so the others skip all of this (finish makes
-- these helpers only then, where its loader call stands: scripts.FLOWS_LOADER).
--
-- Parents may live in other queues (other hash tags): this only works where every queue's keys
-- are on the one server (a single Redis, or a cluster whose prefix carries a hash tag).

local PFX = string.match(ARGV[1], '^(.*){[^{}]*}:$')

local function base_of(queue)
  return PFX .. '{' .. queue .. '}:'
end

local function split(ref)
  local at = string.find(ref, ' ', 1, true)
  return string.sub(ref, 1, at - 1), string.sub(ref, at + 1)
end

local function rjk(ref)
  local q, id = split(ref)
  return base_of(q) .. 'j:' .. id, q, id
end

local function rkey(ref, tag)
  local q, id = split(ref)
  return base_of(q) .. tag .. id
end

local function clock()
  local t = redis.call('TIME')
  return num(tonumber(t[1]) + tonumber(t[2]) / 1000000)
end

local FLOWS_HERE = nil
local function flows_here()
  if FLOWS_HERE == nil then
    FLOWS_HERE = redis.call('HEXISTS', K_meta, 'fl') == 1
  end
  return FLOWS_HERE
end

-- Move a parent out of waiting-children: to delayed when it has a delay, else to waiting.
local function release(ref, now)
  local key, q, id = rjk(ref)
  local cur = redis.pcall('HMGET', key, 'st', 'p', 'pd', 'g')
  if cur['err'] or cur[1] ~= 'waiting-children' then
    return
  end
  local base = base_of(q)
  redis.call('ZREM', base .. 'wc', id)
  local s = redis.call('HINCRBY', base .. 'meta', 'seq', 1)
  local m = string.format('1%013x', s) .. id
  local delay = tonumber(cur[3]) or 0
  if delay > 0 then
    local due = num(tonumber(now) + delay)
    redis.call('ZADD', base .. 'delayed', due, m)
    redis.call('HSET', key, 'st', 'delayed', 'wm', m, 'ra', due)
  elseif cur[4] then
    group_wait_at(base, cur[4], tonumber(cur[2]) or 0, m)
    redis.call('HSET', key, 'st', 'waiting', 'wm', m)
  else
    redis.call('ZADD', base .. 'wait', tonumber(cur[2]) or 0, m)
    redis.call('HSET', key, 'st', 'waiting', 'wm', m)
  end
  redis.call('ZADD', base .. 'marker', 0, WAKE_MEMBER)
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'released',
    'id', id)
end

local function release_if_done(ref, now)
  if redis.call('SCARD', rkey(ref, 'dp:')) == 0 then
    release(ref, now)
  end
end

-- A child completed: each parent still waiting for it keeps its value.
local function child_completed(ref, value, now)
  for _, parent in ipairs(redis.call('SMEMBERS', rkey(ref, 'pa:'))) do
    if redis.call('SREM', rkey(parent, 'dp:'), ref) == 1 then
      redis.call('HSET', rkey(parent, 'dv:'), ref, value)
      release_if_done(parent, now)
    end
  end
end

-- Fail a parent still in waiting-children; true when it was. failed collects it for retention.
local function fail_waiting(ref, reason, now, failed)
  local key, q, id = rjk(ref)
  local cur = redis.pcall('HGET', key, 'st')
  if type(cur) ~= 'string' or cur ~= 'waiting-children' then
    return false
  end
  local base = base_of(q)
  redis.call('ZREM', base .. 'wc', id)
  redis.call('HSET', key, 'st', 'failed', 'fr', reason, 'fo', now)
  redis.call('ZADD', base .. 'failed', us(now), id)
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'failed',
    'id', id, 'failed_reason', reason)
  failed[#failed + 1] = ref
  return true
end

-- Apply the failure policies of failed jobs (work: {ref, reason} pairs) to their parents
-- (only to parent `only` when given), failing parents in turn; failed collects those.
local function cascade(work, now, failed, only)
  while #work > 0 do
    local item = table.remove(work)
    local child, why = item[1], item[2]
    local policy = redis.pcall('HGET', rjk(child), 'fp')
    if type(policy) ~= 'string' or policy == '' then
      policy = 'wait'
    end
    local parents = {only}
    if not only then
      parents = redis.call('SMEMBERS', rkey(child, 'pa:'))
      table.sort(parents)
    end
    only = nil
    if policy ~= 'wait' then
      for _, parent in ipairs(parents) do
        local dp = rkey(parent, 'dp:')
        if redis.call('SISMEMBER', dp, child) == 1 then
          if policy == 'fail' then
            local reason = 'child ' .. string.gsub(child, ' ', ':', 1) .. ' failed: ' .. why
            if fail_waiting(parent, reason, now, failed) then
              work[#work + 1] = {parent, reason}
            end
          else
            redis.call('SREM', dp, child)
            if policy == 'remove' then
              redis.call('SREM', rkey(child, 'pa:'), parent)
            else
              redis.call('HSET', rkey(parent, 'di:'), child, why)
            end
            if policy == 'continue' then
              release(parent, now)
            else
              release_if_done(parent, now)
            end
          end
        end
      end
    end
  end
end

-- Retention of parents failed by a cascade (by their remove_on_fail), once the cascade is over.
local retain_in
local function retain_failed(failed, now)
  for _, ref in ipairs(failed) do
    local key, q = rjk(ref)
    local ok, opts = pcall(cjson.decode, redis.call('HGET', key, 'o') or '{}')
    local count, cutoff = 1000, false
    local keep = ok and type(opts) == 'table' and opts['remove_on_fail']
    if type(keep) == 'table' then
      count = type(keep['count']) == 'number' and keep['count'] or false
      if type(keep['age']) == 'number' then
        cutoff = num(tonumber(now) - keep['age'])
      end
    end
    retain_in(base_of(q), count, cutoff, now)
  end
end

local function end_window(base, id, dedup_id, deleted, now)
  local wkey = base .. 'de:' .. dedup_id
  local w = redis.call('HMGET', wkey, 'j', 'x', 'n')
  if w[1] ~= id then
    return
  end
  if deleted or (not w[3] and (w[2] or '') == '') then
    redis.call('DEL', wkey)
    redis.call('SREM', base .. 'windows', dedup_id)
    return nil
  end
  return w[3]
end

-- A job of queue base was deleted (its hash still there): unlink it from its children and
-- parents, and free the window it holds.
local function forget(base, id, now)
  if base == ARGV[1] then
    if not flows_here() then
      return
    end
  elseif redis.call('HEXISTS', base .. 'meta', 'fl') == 0 then
    return
  end
  now = now or NOW or clock()
  local key = base .. 'j:' .. id
  local cur = redis.pcall('HMGET', key, 'st', 'pa', 'de')
  if cur['err'] then
    return
  end
  local q = string.match(base, '{([^{}]*)}:$')
  local ref = q .. ' ' .. id
  if cur[3] then
    end_window(base, id, cur[3], true, now)
  end
  local dp, dv, di = base .. 'dp:' .. id, base .. 'dv:' .. id, base .. 'di:' .. id
  local kids = redis.call('SMEMBERS', dp)
  for _, c in ipairs(redis.call('HKEYS', dv)) do
    kids[#kids + 1] = c
  end
  for _, c in ipairs(redis.call('HKEYS', di)) do
    kids[#kids + 1] = c
  end
  for _, child in ipairs(kids) do
    redis.call('SREM', rkey(child, 'pa:'), ref)
  end
  redis.call('DEL', dp, dv, di)
  if cur[2] then
    local pa = base .. 'pa:' .. id
    local parents = redis.call('SMEMBERS', pa)
    table.sort(parents)
    redis.call('DEL', pa)
    local failed = {}
    for _, parent in ipairs(parents) do
      if redis.call('SREM', rkey(parent, 'dp:'), ref) == 1 then
        if cur[1] == 'failed' then
          local reason = 'child ' .. q .. ':' .. id .. ' failed and was removed'
          if fail_waiting(parent, reason, now, failed) then
            cascade({{parent, reason}}, now, failed)
          end
        else
          release_if_done(parent, now)
        end
      end
    end
    retain_failed(failed, now)
  end
end

-- Delete jobs of queue base (ids), settling their flows and windows first.
local function delete_ids(base, ids, now)
  for _, id in ipairs(ids) do
    forget(base, id, now)
  end
  for _, id in ipairs(ids) do
    redis.call('DEL', base .. 'j:' .. id, base .. 'l:' .. id)
  end
end

-- retain() of common.lua for any queue, settling flows: drop members of the failed set of base
-- older than cutoff, then all but the newest count (at most 1000 per call).
retain_in = function(base, count, cutoff, now)
  local set = base .. 'failed'
  if cutoff then
    local old = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. us(cutoff), 'LIMIT', '0', '1000')
    if #old > 0 then
      redis.call('ZREM', set, unpack(old))
      delete_ids(base, old, now)
    end
  end
  if count then
    local n = redis.call('ZCARD', set)
    if n > count then
      local popped = redis.call('ZPOPMIN', set, math.min(n - count, 1000))
      local old = {}
      for i = 1, #popped, 2 do
        old[#old + 1] = popped[i]
      end
      delete_ids(base, old, now)
    end
  end
end

-- A job of this queue ended for good (completed: value is its return value; failed: reason):
-- settle its parents, and end its window (adding the kept next add as the new holder).
local function job_ended(id, status, value, now)
  if not flows_here() then
    return
  end
  local cur = redis.call('HMGET', jk(id), 'pa', 'de')
  local ref = string.match(ARGV[1], '{([^{}]*)}:$') .. ' ' .. id
  if cur[1] then
    if status == 'completed' then
      child_completed(ref, value, now)
    else
      local failed = {}
      cascade({{ref, value}}, now, failed)
      retain_failed(failed, now)
    end
  end
  if cur[2] then
    local kept = end_window(ARGV[1], id, cur[2], false, now)
    if kept then
      local k = cjson.decode(kept)
      local run_at = num(tonumber(now) + k['delay'])
      local new_id = add_job('', k['name'], k['data'], k['opts'], now, run_at, k['priority'],
        k['lifo'], now, k['group'] or '')
      redis.call('HSET', jk(new_id), 'de', cur[2])
      redis.call('HSET', ARGV[1] .. 'de:' .. cur[2], 'j', new_id)
      redis.call('HDEL', ARGV[1] .. 'de:' .. cur[2], 'n')
    end
  end
end

FORGET = forget

-- An add with a deduplication window (d: id, ttl, extend, replace, keep_last_if_active as
-- strings; job: the add_job fields) absorbed by this queue's window: returns the holder's id
-- and the outcome, or nil when the add goes ahead.
local function deduplicate(d, job, now)
  local wkey = ARGV[1] .. 'de:' .. d[1]
  local w = redis.call('HMGET', wkey, 'j', 'x')
  local cur = w[1] and job_fields(w[1], 'st', 'wm', 'p', 'g')
  local expired = w[2] and w[2] ~= '' and tonumber(w[2]) <= tonumber(now)
  if not w[1] or not cur or not cur[1] or expired then
    if w[1] then
      redis.call('DEL', wkey)
    end
    return nil
  end
  local holder, st = w[1], cur[1]
  if d[5] == '1' and st == 'active' then
    local kept = cjson.encode({name = job[2], data = job[3], opts = job[4], priority = job[7],
      lifo = job[8], delay = math.max(tonumber(job[6]) - tonumber(job[5]), 0), group = job[9]})
    redis.call('HSET', wkey, 'n', kept, 'x', '')
    redis.call('PERSIST', wkey)
    return holder, 'kept-next'
  end
  if d[3] == '1' and d[2] ~= '' then
    redis.call('HSET', wkey, 'x', num(tonumber(now) + tonumber(d[2])))
    redis.call('PEXPIRE', wkey, math.ceil(tonumber(d[2]) * 1000) + 60000)
  end
  if d[4] == '1' and (st == 'waiting' or st == 'delayed') then
    unlink(holder, st, cur[2], cur[4])
    redis.call('HSET', jk(holder), 'n', job[2], 'd', job[3], 'o', job[4], 'ra', job[6],
      'p', job[7])
    local g = job[9] ~= '' and job[9] or false
    if g then
      redis.call('HSET', jk(holder), 'g', g)
      redis.call('HSET', K_meta, 'gon', 1)
    else
      redis.call('HDEL', jk(holder), 'g')
    end
    if tonumber(job[6]) > tonumber(now) then
      to_delayed(holder, job[6])
    else
      to_waiting(holder, job[7], job[8] == '1', g)
      WAKE_PENDING = true
    end
    return holder, 'replaced'
  end
  return holder, 'ignored'
end

-- Job id of this queue now holds window d (see deduplicate).
local function hold(d, id, now)
  local wkey = ARGV[1] .. 'de:' .. d[1]
  redis.call('DEL', wkey)
  if d[2] ~= '' then
    redis.call('HSET', wkey, 'j', id, 'x', num(tonumber(now) + tonumber(d[2])))
    redis.call('PEXPIRE', wkey, math.ceil(tonumber(d[2]) * 1000) + 60000)
  else
    redis.call('HSET', wkey, 'j', id, 'x', '')
  end
  redis.call('HSET', jk(id), 'de', d[1])
  redis.call('SADD', ARGV[1] .. 'windows', d[1])
  redis.call('HSET', K_meta, 'fl', 1)
  FLOWS_HERE = true
end
