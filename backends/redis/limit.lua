-- ARGV: qp, then 'set', max, duration | 'clear' | 'hold', until | 'gc', n ('' clears) |
-- 'gcc', n ('' clears: the group concurrency cap) | 'grl', max, duration ('' clears: the group
-- rate limit) | 'ghold', group, until (holds one group; later only).
-- set/clear store or remove the queue's rate limit (clear forgets the recorded starts) and
-- wake blocked fetches so they look again under the new limit; hold moves the hold-until time
-- later, never earlier. Returns 1 when the queue was registered just now.
local op = ARGV[2]
if op == 'set' then
  redis.call('HSET', K_meta, 'rlm', ARGV[3], 'rld', ARGV[4])
  wake()
elseif op == 'gc' then
  -- the global concurrency cap (see take)
  if ARGV[3] == '' then
    redis.call('HDEL', K_meta, 'gc')
  else
    redis.call('HSET', K_meta, 'gc', ARGV[3])
  end
  wake()
elseif op == 'gcc' or op == 'grl' then
  if op == 'gcc' and ARGV[3] == '' then
    redis.call('HDEL', K_meta, 'gcc')
  elseif op == 'gcc' then
    redis.call('HSET', K_meta, 'gcc', ARGV[3])
  elseif ARGV[3] == '' then
    redis.call('HDEL', K_meta, 'grm', 'grd')
  else
    redis.call('HSET', K_meta, 'grm', ARGV[3], 'grd', ARGV[4])
  end
  -- groups left out of the ring as full may start again under the new limit
  for _, g in ipairs(redis.call('HKEYS', gkey('gsv'))) do
    group_back(g)
  end
  wake()
elseif op == 'ghold' then
  redis.call('ZADD', gkey('ghold'), 'GT', ARGV[4], ARGV[3])
elseif op == 'clear' then
  redis.call('HDEL', K_meta, 'rlm', 'rld')
  redis.call('DEL', K_limiter)
  wake()
else
  local cur = redis.call('HGET', K_meta, 'hold')
  if not cur or tonumber(ARGV[3]) > tonumber(cur) then
    redis.call('HSET', K_meta, 'hold', ARGV[3])
  end
end
return register()
