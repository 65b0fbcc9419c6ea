-- ARGV: qp, worker id, expires, info json, now. Returns 1 when the queue was registered now.
redis.call('ZADD', K_workers, ARGV[3], ARGV[2])
redis.call('HSET', K_workers_info, ARGV[2], ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', K_workers, '-inf', ARGV[5])
if #gone > 0 then
  redis.call('ZREM', K_workers, unpack(gone))
  redis.call('HDEL', K_workers_info, unpack(gone))
end
return register()
