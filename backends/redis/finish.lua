-- ARGV: qp, token, fetch, now, lease_until, rid, m, m lost rids (see recover), n, then
--   n x (id, status, attempts_made, finished_on, returnvalue, failed_reason, stacktrace,
--   retry_at, keep_count, keep_cutoff)
-- keep_count '0' removes the job at once; '' means no limit (count or age).
-- Returns {{lost ids}, {id, FIELDS..., ...}}
local token = ARGV[2]
NOW = ARGV[4]
local m = tonumber(ARGV[7])
recover(token, 8, 7 + m)
-- the queue's settings, read once: nothing below changes them unless the queue has flows
-- (ending a job may then add its window's kept job, and so a group), which reads them again
local settings = redis.call('HMGET', K_meta, unpack(META_TAKE))
FLOWS_HERE = settings[8] ~= false
if FLOWS_HERE then
  -- the flows helpers are made only here (scripts.FLOWS_LOADER): without them, deleting a job
  -- settles nothing (FORGET stays nil), as forget would find no flows in this queue
  load_flows()
end
local n = tonumber(ARGV[8 + m])
local lost = {}
local trims = {}
local grouped = false
local base = 9 + m
for i = 0, n - 1 do
  local b = base + i * 10
  local id, status, am, fon = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local key = jk(id)
  local cur = job_fields(id, 'st', 'tk', 'p', 'po', 'g')
  if not cur or cur[1] ~= 'active' or cur[2] ~= token then
    lost[#lost + 1] = id
  else
    redis.call('ZREM', K_active, id)
    if cur[5] then
      group_left(cur[5])
      grouped = true
    end
    if status == 'retry' then
      local retry_at = ARGV[b + 7]
      redis.call('HSET', key, 'am', am, 'fr', ARGV[b + 5], 'tr', ARGV[b + 6], 'ra', retry_at,
        'tk', '', 'lu', '')
      if tonumber(retry_at) > tonumber(fon) then
        to_delayed(id, retry_at)
      else
        to_waiting(id, cur[3], false, cur[5])
        wake()
      end
      event('retrying', id, 'failed_reason', ARGV[b + 5], 'retry_at', retry_at)
    else
      local set = K_failed
      if status == 'completed' then
        set = K_completed
        redis.call('HSET', key, 'st', 'completed', 'rv', ARGV[b + 4], 'fo', fon, 'am', am,
          'tk', '', 'lu', '')
        event('completed', id, 'returnvalue', ARGV[b + 4])
        if FLOWS_HERE then
          job_ended(id, 'completed', ARGV[b + 4], fon)
        end
      else
        redis.call('HSET', key, 'st', 'failed', 'fr', ARGV[b + 5], 'tr', ARGV[b + 6],
          'fo', fon, 'am', am, 'tk', '', 'lu', '')
        event('failed', id, 'failed_reason', ARGV[b + 5])
        if FLOWS_HERE then
          job_ended(id, 'failed', ARGV[b + 5], fon)
        end
      end
      count_metric(status, fon, cur[4])
      local count, cutoff = ARGV[b + 8], ARGV[b + 9]
      if count == '0' then
        delete_jobs({id})
      else
        redis.call('ZADD', set, us(fon), id)
        if count ~= '' or cutoff ~= '' then
          -- one trim per (set, count) after the batch, with the latest age cutoff
          local tk = set .. '|' .. count
          local t = trims[tk]
          if not t then
            t = {set, tonumber(count), false}
            trims[tk] = t
          end
          if cutoff ~= '' and (not t[3] or tonumber(cutoff) > tonumber(t[3])) then
            t[3] = cutoff
          end
        end
      end
    end
  end
end
for _, t in pairs(trims) do
  retain(t[1], t[2], t[3])
end
if #lost < n and settings[5] then
  wake() -- under a global concurrency cap an end frees a slot a blocked fetch may take
elseif grouped and settings[7] then
  wake() -- and under a group concurrency cap, a slot of its group
end
store_metrics()
local jobs = {}
local want = tonumber(ARGV[3])
if want > 0 then
  if FLOWS_HERE then
    settings = nil
  end
  jobs = take(token, want, ARGV[4], ARGV[5], ARGV[6], settings)
end
flush_wake()
return {lost, jobs}
