-- ARGV: qp, op, key, ...
--   save: definition json, cadence json, next_run -> {next_run as stored, registered}
--   remove: -> 1 or 0
--   advance: expected_next, next_run, now, n, then n x (add_job fields) -> 1 or 0
local op, key = ARGV[2], ARGV[3]
if op == 'save' then
  local cadence, next_run = ARGV[5], ARGV[6]
  local old_cadence = redis.call('HGET', K_sched_cad, key)
  local old_next = redis.call('HGET', K_sched_next, key)
  if old_cadence == cadence and old_next then
    next_run = old_next
  end
  redis.call('HSET', K_sched, key, ARGV[4])
  redis.call('HSET', K_sched_cad, key, cadence)
  redis.call('HSET', K_sched_next, key, next_run)
  return {next_run, register()}
elseif op == 'remove' then
  redis.call('HDEL', K_sched_cad, key)
  redis.call('HDEL', K_sched_next, key)
  return redis.call('HDEL', K_sched, key)
end
if redis.call('HGET', K_sched_next, key) ~= ARGV[4] then
  return 0
end
redis.call('HSET', K_sched_next, key, ARGV[5])
local now = ARGV[6]
for i = 0, tonumber(ARGV[7]) - 1 do
  local b = 8 + i * 9
  add_job(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5],
    ARGV[b + 6], ARGV[b + 7], now, ARGV[b + 8])
end
flush_wake()
return 1
