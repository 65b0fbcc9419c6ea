-- ARGV: qp, now ('' when every job is plain: a plain job is added at its own ts), n, then per
-- job either
--   'p', id ('' for the next numeric id), name, data, opts, ts: a plain job (it runs at ts,
--   priority 0, first in first out, no group, no deduplication window), or
--   'f', id, name, data, opts, ts, run_at, priority, lifo, group ('' for none), then the
--   deduplication window: id ('' for none), ttl ('' for none), extend, replace,
--   keep_last_if_active as '1'/'0'.
-- Returns {registered, id1, added1, outcome1, ...}; outcome is '' or how the add was absorbed.
local now = ARGV[2]
local out = {register()}
-- the helpers of deduplication windows are made only when a job of the call has one
-- (scripts.FLOWS_LOADER)
local b, windows = 4, false
for _ = 1, tonumber(ARGV[3]) do
  if ARGV[b] == 'p' then
    b = b + 6
  else
    windows = windows or ARGV[b + 10] ~= ''
    b = b + 15
  end
end
if windows then
  load_flows()
end
b = 4
for _ = 1, tonumber(ARGV[3]) do
  local id, added, outcome = '', 0, ''
  if ARGV[b] == 'p' then
    local ts = ARGV[b + 5]
    id, added = add_job(ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ts, ts, '0', '0', ts,
      false)
    b = b + 6
  else
    local job = {ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6],
      ARGV[b + 7], ARGV[b + 8], ARGV[b + 9]}
    local d = {ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13], ARGV[b + 14]}
    b = b + 15
    id = job[1]
    if d[1] ~= '' and not (id ~= '' and redis.call('EXISTS', jk(id)) == 1) then
      local holder, how = deduplicate(d, job, now)
      if holder then
        id, outcome = holder, how
        event('deduplicated', id, 'deduplication_id', d[1], 'outcome', how)
      end
    end
    if outcome == '' then
      id, added = add_job(job[1], job[2], job[3], job[4], job[5], job[6], job[7], job[8], now,
        job[9])
      if added == 1 and d[1] ~= '' then
        hold(d, id, now)
      end
    end
  end
  out[#out + 1] = id
  out[#out + 1] = added
  out[#out + 1] = outcome
end
flush_wake()
return out
