-- Shared prelude of the polyjobs scripts. Each script is sent with only the top-level definitions
-- of the header, this file and flows.lua that it refers to, directly or through other kept ones, in
-- this order (scripts.py, prelude.py): so start every top-level statement at the start of a line,
-- one per line. A statement that defines nothing, or whose value calls Redis or a helper (for its
-- effect), is sent with every script. The fixed keys are named K_wait, K_delayed, ... (sent as
-- KEYS[1], KEYS[2], ...: scripts.fold). The generated header before this text defines JP and LP (the prefixes of job and log keys, made from the queue's key
-- prefix qp = ARGV[1]), FIELDS (the job-hash fields a script returns, in order), and NOT_A_HASH
-- and MISSING (failed reasons of jobs whose records are unusable). F['st'] (a field's position in
-- FIELDS), unpack(FIELDS) and #FIELDS are written out as constants before a script is sent
-- (scripts.fold): no table is built for them on every call.
--
-- A job hash holds: n name, d data, o opts, st state, ts timestamp, ra run_at, p priority,
-- am attempts made, as attempts started, sc stalls, pg progress, rv returnvalue,
-- fr failed reason, tr stacktrace, po processed on, fo finished on, tk owner token,
-- lu lease until, rq the request that took it, wm its member in the waiting set. Empty strings mean "none".

local WAKE_MEMBER = '1'
-- The caller's clock (a script that has it sets it), and the hook flows.lua sets: settle a job's
-- flows and window before it is deleted (FORGET(queue base, id)).
local NOW = nil
local FORGET = nil
local LIFO_TOP = 4503599627370495 -- 16^13 - 1
-- Seconds after which a fetch that found the global concurrency cap full looks again (a slot
-- frees when any worker's job ends; finish also wakes one blocked fetch then).
local CAP_LOOK_AGAIN = 0.25

local function jk(id)
  return JP .. id
end

local function lk(id)
  return LP .. id
end

-- HMGET of a job's fields, or nil when its key holds another type than a hash (a corrupted
-- record). Scripts check this before they write, so WRONGTYPE never stops one half-way, and they
-- never write to such a key.
local function job_fields(id, ...)
  local v = redis.pcall('HMGET', jk(id), ...)
  if v['err'] then
    return nil
  end
  return v
end

local function num(x)
  return string.format('%.17g', x)
end

-- Whole microseconds (exact in a double) for the scores of the sets written on every job
-- (active, completed, failed): small sorted sets are listpacks, and a listpack compares
-- integer scores several times faster than decimal ones. As text: redis.call turns a number
-- argument into text with '%.17g', which costs Redis several times a '%d' here (the same
-- digits for any time before the year 5000). Beyond 2^53 us (a lease of centuries, or inf) '%d'
-- would wrap to a negative number, so those go as '%.17g'.
local function us(t)
  local x = math.floor(tonumber(t) * 1000000)
  if x < 9007199254740992 and x > -9007199254740992 then
    return string.format('%d', x)
  end
  return num(x)
end

local function wake()
  redis.call('ZADD', K_marker, '0', WAKE_MEMBER)
end

-- Append a job event (best-effort: the stream keeps about EVENTS_MAXLEN entries).
local function event(name, id, ...)
  redis.call('XADD', K_events, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', name, 'id', id, ...)
end

-- End a job whose record is unusable (vals: nil for a key of another type, which stays as it
-- is; or no state: the hash is gone, and a failed record with the reason takes its place) in the
-- failed set, instead of taking or stalling it. The caller has already taken it out of its set.
local function fail_broken(id, vals, now)
  local reason = NOT_A_HASH
  if vals then
    reason = MISSING
    redis.call('HSET', jk(id), 'st', 'failed', 'fr', reason, 'fo', now, 'tk', '', 'lu', '')
  end
  redis.call('ZADD', K_failed, us(now), id)
  event('failed', id, 'failed_reason', reason)
end

-- Scripts that add many jobs wake blocked fetches once, at the end (see add_job).
local WAKE_PENDING = false

local function flush_wake()
  if WAKE_PENDING then
    wake()
    WAKE_PENDING = false
  end
end

-- The waiting set is scored by priority; within a priority, members sort by an order prefix:
-- '0' + descending counter for jobs put in front (lifo, released), '1' + ascending counter.
local function wmember(id, front)
  local s = redis.call('HINCRBY', K_meta, 'seq', '1')
  if front then
    return string.format('0%013x', LIFO_TOP - s) .. id
  end
  return string.format('1%013x', s) .. id
end

local function wid(member)
  return string.sub(member, 15)
end

-- Job groups (see GroupBackend). A grouped job's hash holds g, its group (never ''), and only
-- its group's set holds it while it waits (wait holds the jobs without a group). Keys, under
-- the queue's prefix: gw:<group> ZSET its waiting jobs (as wait); gring ZSET the groups that
-- may be ready (score: their last turn, a queue sequence; a group is dropped when found empty,
-- held or full, and put back when that ends); gsv HASH group -> last turn, for every group
-- with waiting or active jobs; gact HASH group -> its active jobs; ghold ZSET group -> held
-- until (a hold, or its rate limit's window); gst:<group> ZSET its recent starts. Meta: gon
-- (the queue has had grouped jobs), gwn (grouped jobs waiting), gus (last turn of the jobs
-- without a group), gcc (group concurrency), grm and grd (group rate limit).
local function gkey(name)
  return ARGV[1] .. name
end

-- Put group g back in the ring, at its last turn, if it has waiting jobs.
local function group_back(g)
  if redis.call('EXISTS', gkey('gw:') .. g) == 1 then
    redis.call('ZADD', gkey('gring'), 'NX', redis.call('HGET', gkey('gsv'), g) or 0, g)
  end
end

-- Put waiting member m of group g in its group's set, in the queue whose key prefix is base
-- (a flow's jobs may live in other queues).
local function group_wait_at(base, g, prio, m)
  redis.call('ZADD', base .. 'gw:' .. g, prio, m)
  redis.call('HINCRBY', base .. 'meta', 'gwn', 1)
  local sv = redis.call('HGET', base .. 'gsv', g)
  if not sv then
    sv = 0
    redis.call('HSET', base .. 'gsv', g, 0)
  end
  redis.call('ZADD', base .. 'gring', 'NX', sv, g)
end

local function group_wait(g, prio, m)
  group_wait_at(ARGV[1], g, prio, m)
end

-- A job of group g (false: none) is no longer active: its group has a slot more.
local function group_left(g)
  if g then
    if redis.call('HINCRBY', gkey('gact'), g, -1) <= 0 then
      redis.call('HDEL', gkey('gact'), g)
      if redis.call('EXISTS', gkey('gw:') .. g) == 0 then
        redis.call('HDEL', gkey('gsv'), g) -- nothing of it is left: forget it
        return
      end
    end
    group_back(g)
  end
end

-- Jobs waiting in the queue, grouped or not.
local function waiting_count()
  return redis.call('ZCARD', K_wait) + (tonumber(redis.call('HGET', K_meta, 'gwn')) or 0)
end

local function to_waiting(id, prio, front, g)
  local m = wmember(id, front)
  if not tonumber(prio) then
    prio = 0 -- none, or a corrupted field ZADD would refuse half-way through a script
  end
  if g then
    group_wait(g, prio, m)
  else
    redis.call('ZADD', K_wait, prio, m)
  end
  redis.call('HSET', jk(id), 'st', 'waiting', 'wm', m)
end

-- Put a job in the delayed set (score = due time, member = order prefix + id, so jobs due at
-- the same time keep their order); wake blocked fetches when it is the next one due, so they
-- shorten their wait.
local function to_delayed(id, run_at)
  local m = wmember(id, false)
  redis.call('ZADD', K_delayed, run_at, m)
  redis.call('HSET', jk(id), 'st', 'delayed', 'wm', m)
  local head = redis.call('ZRANGE', K_delayed, '0', '0')
  if head[1] == m then
    wake()
  end
end

-- Take a job out of the state set that holds it (by its stored state).
local function unlink(id, st, wm, g)
  if st == 'waiting' then
    if wm and g then
      if redis.call('ZREM', gkey('gw:') .. g, wm) == 1 then
        redis.call('HINCRBY', K_meta, 'gwn', -1)
      end
    elseif wm then
      redis.call('ZREM', K_wait, wm)
    end
  elseif st == 'delayed' then
    if wm then
      redis.call('ZREM', K_delayed, wm)
    end
  elseif st == 'active' then
    redis.call('ZREM', K_active, id)
  elseif st == 'completed' then
    redis.call('ZREM', K_completed, id)
  elseif st == 'failed' then
    redis.call('ZREM', K_failed, id)
  elseif st == 'waiting-children' then
    redis.call('ZREM', K_wc, id)
  end
end

local function delete_job(id)
  local cur = job_fields(id, 'st', 'wm', 'g')
  if not cur then
    -- a key of another type: its state is unknown; the sets a take or sweep put it in
    redis.call('ZREM', K_active, id)
    redis.call('ZREM', K_completed, id)
    redis.call('ZREM', K_failed, id)
  elseif cur[1] then
    unlink(id, cur[1], cur[2], cur[3])
  end
  if FORGET then
    FORGET(ARGV[1], id)
  end
  redis.call('DEL', jk(id), lk(id))
end

-- Delete jobs of this queue that are already out of their state sets (flows settled first).
local function delete_jobs(ids)
  if FORGET then
    for _, id in ipairs(ids) do
      FORGET(ARGV[1], id)
    end
  end
  for _, id in ipairs(ids) do
    redis.call('DEL', jk(id), lk(id))
  end
end

-- A sorted set of up to zset-max-listpack-entries (128) members, each at most
-- zset-max-listpack-value (64) bytes, is a listpack, where ZADD walks every member to put the
-- newest finish at the end: ~20k instructions at the 100 a default retention keeps, against
-- ~2k in a skiplist. A longer member turns the set into a skiplist, and Redis keeps that
-- encoding as members leave (a restart may load it back as a listpack: the next retention
-- turns it again). No job id holds a space (Queue checks); NX anyway: a job whose id were this
-- text would keep its place.
local function as_skiplist(set)
  local long = '-- a member longer than zset-max-listpack-value: the set becomes a skiplist --'
  local encoding = redis.call('OBJECT', 'ENCODING', set)
  if encoding == 'listpack' or encoding == 'ziplist' then
    if redis.call('ZADD', set, 'NX', '0', long) == 1 then
      redis.call('ZREM', set, long)
    end
  end
end

-- Retention of a finished set: drop members older than cutoff (exclusive), then all but the
-- newest count. At most 1000 jobs per call, so a script stays short; the next call goes on.
-- The set is a skiplist after (see as_skiplist): retention keeps it small, and every finish
-- adds to it.
local function retain(set, count, cutoff)
  as_skiplist(set)
  if cutoff then
    local old = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. us(cutoff), 'LIMIT', '0', '1000')
    if #old > 0 then
      redis.call('ZREM', set, unpack(old))
      delete_jobs(old)
    end
  end
  if count then
    local n = redis.call('ZCARD', set)
    if n > count then
      -- the oldest, as ZPOPMIN would pop them, without their scores (each one a '%.17g')
      local last = string.format('%d', math.min(n - count, 1000) - 1)
      local old = redis.call('ZRANGE', set, '0', last)
      redis.call('ZREMRANGEBYRANK', set, '0', last)
      delete_jobs(old)
    end
  end
end

local function promote_due(now)
  local due = redis.call('ZRANGEBYSCORE', K_delayed, '-inf', now, 'LIMIT', '0', '1000')
  if #due == 0 then
    return
  end
  for _, m in ipairs(due) do
    local id = wid(m)
    local cur = job_fields(id, 'st', 'p', 'g')
    if cur and cur[1] then
      to_waiting(id, cur[2], false, cur[3])
    else
      fail_broken(id, cur, now)
    end
  end
  redis.call('ZREM', K_delayed, unpack(due))
end

-- The meta fields take reads: m[1] paused, m[2] rlm, m[3] rld, m[4] hold, m[5] gc, m[6] gon;
-- and m[7] gcc, m[8] fl, for finish, which reads them once for its own checks and its take.
local META_TAKE = {'paused', 'rlm', 'rld', 'hold', 'gc', 'gon', 'gcc', 'fl'}

local function is_paused()
  return redis.call('HEXISTS', K_meta, 'paused') == 1
end

-- Append a job's id and FIELDS values to out.
local function emit(out, id, vals)
  out[#out + 1] = id
  for j = 1, #FIELDS do
    out[#out + 1] = vals[j]
  end
end

-- How many of the limit jobs asked for may start now under the hold and the rate limit (the
-- meta values m = HMGET(K_meta, 'paused', 'rlm', 'rld', 'hold')), and, when none may, the time
-- one may (a string). Starts that left the window are trimmed from K_limiter first.
local function allowance(m, now, limit)
  local t = tonumber(now)
  if m[4] then
    if tonumber(m[4]) > t then
      return 0, m[4]
    end
    redis.call('HDEL', K_meta, 'hold') -- over: later takes skip this again
  end
  if not m[2] then
    return limit, false
  end
  local dur = tonumber(m[3])
  redis.call('ZREMRANGEBYSCORE', K_limiter, '-inf', num(t - dur))
  local started = redis.call('ZCARD', K_limiter)
  local left = tonumber(m[2]) - started
  if left > 0 then
    return math.min(limit, left), false
  end
  -- one may start once all but max - 1 of these starts have left the window (more than max
  -- are there when the limit was just lowered)
  local i = started - tonumber(m[2])
  local oldest = redis.call('ZRANGE', K_limiter, i, i, 'WITHSCORES')
  return 0, num(tonumber(oldest[2]) + dur)
end

-- Start the job of waiting member wm (already out of its set) for token; append it to out.
-- Returns whether it started (a broken record fails instead).
local function start_job(out, member, token, now, lease_until, rid)
  local id = wid(member)
  local vals = job_fields(id, unpack(FIELDS))
  if vals and vals[F['st']] then
    local started = (tonumber(vals[F['as']]) or 0) + 1
    redis.call('HSET', jk(id), 'st', 'active', 'tk', token, 'lu', lease_until, 'po', now,
      'as', started, 'rq', rid)
    redis.call('ZADD', K_active, us(lease_until), id)
    vals[F['st']] = 'active'
    vals[F['tk']] = token
    vals[F['lu']] = lease_until
    vals[F['po']] = now
    vals[F['as']] = tostring(started)
    emit(out, id, vals)
    return true
  end
  fail_broken(id, vals, now)
  return false
end

-- Whether group g may start a job now under its hold, the group concurrency cap (gm[1]) and
-- the group rate limit (gm[2] starts in gm[3] seconds); a full window holds it until a start
-- leaves it.
local function group_ready(g, now, gm)
  local held = redis.call('ZSCORE', gkey('ghold'), g)
  if held then
    if tonumber(held) > tonumber(now) then
      return false
    end
    redis.call('ZREM', gkey('ghold'), g)
  end
  if gm[1] and (tonumber(redis.call('HGET', gkey('gact'), g)) or 0) >= tonumber(gm[1]) then
    return false
  end
  if gm[2] then
    local key, dur = gkey('gst:') .. g, tonumber(gm[3])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(tonumber(now) - dur))
    local n = redis.call('ZCARD', key) - tonumber(gm[2])
    if n >= 0 then
      local oldest = redis.call('ZRANGE', key, n, n, 'WITHSCORES')
      redis.call('ZADD', gkey('ghold'), num(tonumber(oldest[2]) + dur), g)
      return false
    end
  end
  return true
end

-- take for a queue with groups: one job per ready group in turn, least recently served first
-- (the jobs without a group are one member, their last turn in gus). m: the meta values.
local function take_grouped(token, limit, now, lease_until, rid, m)
  local out = {}
  local frees_at, capped = false, false
  local due = redis.call('ZRANGEBYSCORE', gkey('ghold'), '-inf', now, 'LIMIT', 0, 1000)
  for _, g in ipairs(due) do
    redis.call('ZREM', gkey('ghold'), g)
    group_back(g)
  end
  if m[5] then
    local free = tonumber(m[5]) - redis.call('ZCARD', K_active)
    if free <= 0 then
      if waiting_count() == 0 then
        return out, false, true
      end
      return out, num(tonumber(now) + CAP_LOOK_AGAIN), true
    end
    if free < limit then
      limit, capped = free, true
    end
  end
  if m[2] or m[4] then
    local wanted = limit
    limit, frees_at = allowance(m, now, limit)
    if limit <= 0 then
      if waiting_count() == 0 then
        frees_at = false
      end
      return out, frees_at, true
    end
    capped = capped or limit < wanted
  end
  local gm = redis.call('HMGET', K_meta, 'gcc', 'grm', 'grd', 'gus')
  local gus = tonumber(gm[4]) or 0
  local plain = redis.call('ZCARD', K_wait) > 0
  local ring, sv = gkey('gring'), gkey('gsv')
  local n, starts = 0, {}
  while n < limit do
    local head = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
    local g = head[1]
    if not g and not plain then
      break
    end
    if plain and (not g or gus <= tonumber(head[2])) then
      local popped = redis.call('ZPOPMIN', K_wait, 1)
      if #popped == 0 then
        plain = false
      else
        if start_job(out, popped[1], token, now, lease_until, rid) then
          n = n + 1
        end
        gus = redis.call('HINCRBY', K_meta, 'seq', 1)
        plain = redis.call('ZCARD', K_wait) > 0
      end
    else
      local set = gkey('gw:') .. g
      local popped = false
      if group_ready(g, now, gm) then
        popped = redis.call('ZPOPMIN', set, 1)
        if #popped == 0 then
          popped = false
        end
      end
      if not popped then
        redis.call('ZREM', ring, g)
        if redis.call('EXISTS', set) == 0 and not redis.call('HGET', gkey('gact'), g) then
          redis.call('HDEL', sv, g)
        end
      else
        redis.call('HINCRBY', K_meta, 'gwn', -1)
        if start_job(out, popped[1], token, now, lease_until, rid) then
          n = n + 1
          redis.call('HINCRBY', gkey('gact'), g, 1)
          if gm[2] then
            starts[#starts + 1] = g
          end
        end
        local s = redis.call('HINCRBY', K_meta, 'seq', 1)
        redis.call('ZADD', ring, s, g)
        redis.call('HSET', sv, g, s)
        if gm[2] then
          local key = gkey('gst:') .. g
          redis.call('ZADD', key, now, rid .. ':' .. n)
          redis.call('PEXPIRE', key, math.ceil(tonumber(gm[3]) * 1000) + 1000)
        end
      end
    end
  end
  redis.call('HSET', K_meta, 'gus', gus)
  if m[2] and n > 0 then
    local marks = {}
    for i = 1, n do
      marks[#marks + 1] = now
      marks[#marks + 1] = rid .. ':' .. i
    end
    redis.call('ZADD', K_limiter, unpack(marks))
  end
  if n == 0 and (tonumber(redis.call('HGET', K_meta, 'gwn')) or 0) > 0 then
    -- only held, full or rate-limited groups wait: look again when the first hold ends
    local first = redis.call('ZRANGE', gkey('ghold'), 0, 0, 'WITHSCORES')
    if first[2] and (not frees_at or tonumber(first[2]) < tonumber(frees_at)) then
      frees_at = first[2]
    end
    capped = true
  end
  return out, frees_at, capped
end

-- Promote due delayed jobs, then move up to limit waiting jobs to active, owned by token until
-- lease_until and tagged with the request id rid, as many as the hold and the rate limit let
-- start now. Returns id + FIELDS for each job taken; when the limiter held every waiting job
-- back, the time it lets one start (else false); and whether the limiter capped the take.
-- m: the meta values META_TAKE names when the caller has just read them (else nil).
local function take(token, limit, now, lease_until, rid, m)
  promote_due(now)
  local out = {}
  if limit <= 0 then
    return out, false, false
  end
  m = m or redis.call('HMGET', K_meta, unpack(META_TAKE))
  if m[1] then
    return out, false, false
  end
  if m[6] then
    return take_grouped(token, limit, now, lease_until, rid, m)
  end
  local frees_at, capped = false, false
  if m[5] then
    -- the global concurrency cap: no more active jobs than gc, across every worker
    local free = tonumber(m[5]) - redis.call('ZCARD', K_active)
    if free <= 0 then
      if redis.call('ZCARD', K_wait) == 0 then
        return out, false, true
      end
      return out, num(tonumber(now) + CAP_LOOK_AGAIN), true
    end
    if free < limit then
      limit = free
      capped = true
    end
  end
  if m[2] or m[4] then
    local wanted = limit
    limit, frees_at = allowance(m, now, limit)
    if limit <= 0 then
      if redis.call('ZCARD', K_wait) == 0 then
        frees_at = false
      end
      return out, frees_at, true
    end
    capped = capped or limit < wanted
  end
  local popped = redis.call('ZPOPMIN', K_wait, limit)
  local n = 0
  for i = 1, #popped, 2 do
    local id = wid(popped[i])
    local key = jk(id)
    local vals = job_fields(id, unpack(FIELDS))
    if vals and vals[F['st']] then
      n = n + 1
      local started = tostring((tonumber(vals[F['as']]) or 0) + 1)
      redis.call('HSET', key, 'st', 'active', 'tk', token, 'lu', lease_until, 'po', now,
        'as', started, 'rq', rid)
      redis.call('ZADD', K_active, us(lease_until), id)
      vals[F['st']] = 'active'
      vals[F['tk']] = token
      vals[F['lu']] = lease_until
      vals[F['po']] = now
      vals[F['as']] = started
      emit(out, id, vals)
    else
      fail_broken(id, vals, now)
    end
  end
  if m[2] and n > 0 then
    -- one start per job, at the same time as its processed_on; members are unique per request
    local starts = {}
    for i = 1, n do
      starts[#starts + 1] = now
      starts[#starts + 1] = rid .. ':' .. i
    end
    redis.call('ZADD', K_limiter, unpack(starts))
  end
  return out, false, capped
end

-- After a blocked fetch was woken and took jobs: if more are ready, pass the wake-up on to the
-- next blocked worker (each add wakes one; finish-and-fetch calls never need to). Not when the
-- rate limiter capped this take (capped): the next one would only find the window full.
local function pass_wake_on(taken, capped)
  if taken > 0 and not capped and waiting_count() > 0 then
    wake()
  end
end

-- Hand back to the front of waiting the jobs that requests rids[first..last] of token took
-- but whose replies never reached the caller (connection lost, call cancelled).
local function recover(token, first, last)
  if last < first then
    return
  end
  local lost = {}
  for i = first, last do
    lost[ARGV[i]] = true
  end
  for _, id in ipairs(redis.call('ZRANGE', K_active, 0, -1)) do
    local cur = job_fields(id, 'tk', 'rq', 'p', 'g')
    if cur and cur[1] == token and cur[2] and lost[cur[2]] then
      redis.call('ZREM', K_active, id)
      redis.call('HSET', jk(id), 'tk', '', 'lu', '')
      group_left(cur[4])
      to_waiting(id, cur[3], true, cur[4])
      WAKE_PENDING = true
    end
  end
end

-- When a blocked fetch should look again: the next delayed job falling due, or the limiter
-- letting a job start (frees_at, from take), whichever comes first; false for neither.
local function next_due(frees_at)
  if is_paused() then
    return false
  end
  local head = redis.call('ZRANGE', K_delayed, '0', '0', 'WITHSCORES')
  local due = head[2] or false
  if frees_at and (not due or tonumber(frees_at) < tonumber(due)) then
    return frees_at
  end
  return due
end

-- Add one job unless its id exists; '' as id assigns the next number. Returns id, added.
-- The caller runs flush_wake() after its last add_job.
local function add_job(id, name, data, opts, ts, run_at, prio, lifo, now, g)
  if id == '' then
    repeat
      id = tostring(redis.call('HINCRBY', K_meta, 'id', '1'))
    until redis.call('EXISTS', jk(id)) == 0
  elseif redis.call('EXISTS', jk(id)) == 1 then
    return id, 0
  end
  local key = jk(id)
  if g and g ~= '' then
    redis.call('HSET', key, 'g', g)
    redis.call('HSET', K_meta, 'gon', '1')
  else
    g = false
  end
  if tonumber(run_at) > tonumber(now) then
    redis.call('HSET', key, 'n', name, 'd', data, 'o', opts, 'ts', ts, 'ra', run_at, 'p', prio,
      'am', '0', 'as', '0', 'sc', '0', 'st', 'delayed')
    to_delayed(id, run_at)
    event('added', id, 'name', name, 'state', 'delayed')
  elseif g then
    redis.call('HSET', key, 'n', name, 'd', data, 'o', opts, 'ts', ts, 'ra', run_at, 'p', prio,
      'am', '0', 'as', '0', 'sc', '0')
    to_waiting(id, prio, lifo == '1', g)
    WAKE_PENDING = true
    event('added', id, 'name', name, 'state', 'waiting')
  else
    local m = wmember(id, lifo == '1')
    redis.call('HSET', key, 'n', name, 'd', data, 'o', opts, 'ts', ts, 'ra', run_at, 'p', prio,
      'am', '0', 'as', '0', 'sc', '0', 'st', 'waiting', 'wm', m)
    redis.call('ZADD', K_wait, prio, m)
    WAKE_PENDING = true
    event('added', id, 'name', name, 'state', 'waiting')
  end
  return id, 1
end

-- Mark the queue as known; true the first time (the caller then adds it to the registry).
local function register()
  return redis.call('HSETNX', K_meta, 'reg', '1')
end

-- Stored metrics (see MetricsBackend): the hash <qp>metrics holds, per minute M (its start in
-- whole seconds), c:M completed, f:M failed, t:M the seconds of processing; 'newest' is the
-- newest minute. A finish call adds its counts per minute; a new newest minute forgets the
-- minutes more than METRICS_KEEP seconds older.
local METRICS = {}

local function count_metric(status, fon, po)
  fon = tonumber(fon)
  local minute = math.floor(fon / 60) * 60
  local m = METRICS[minute]
  if not m then
    m = {0, 0, 0}
    METRICS[minute] = m
  end
  if status == 'completed' then
    m[1] = m[1] + 1
  else
    m[2] = m[2] + 1
  end
  local started = tonumber(po)
  if started and fon > started then
    m[3] = m[3] + fon - started
  end
end

-- 'newest' is read only when a minute is new to the hash (its count was absent: HINCRBY
-- answers the increment itself): a minute already there is at most the newest one.
local function store_metrics()
  local key = ARGV[1] .. 'metrics'
  local newest = false
  local moved = false
  for minute, m in pairs(METRICS) do
    local s = string.format('%d', minute)
    local known = false
    if m[1] > 0 then
      known = redis.call('HINCRBY', key, 'c:' .. s, string.format('%d', m[1])) > m[1]
    end
    if m[2] > 0 then
      known = redis.call('HINCRBY', key, 'f:' .. s, string.format('%d', m[2])) > m[2] or known
    end
    if m[3] > 0 then
      redis.call('HINCRBYFLOAT', key, 't:' .. s, string.format('%.6f', m[3]))
    end
    if not known then
      newest = newest or tonumber(redis.call('HGET', key, 'newest') or '') or 0
      if minute > newest then
        newest = minute
        moved = true
      end
    end
  end
  if moved then
    redis.call('HSET', key, 'newest', string.format('%d', newest))
    local old = {}
    for _, field in ipairs(redis.call('HKEYS', key)) do
      local minute = tonumber(string.sub(field, 3))
      if minute and string.sub(field, 2, 2) == ':' and minute < newest - METRICS_KEEP then
        old[#old + 1] = field
      end
    end
    for i = 1, #old, 1000 do
      redis.call('HDEL', key, unpack(old, i, math.min(i + 999, #old)))
    end
  end
end
