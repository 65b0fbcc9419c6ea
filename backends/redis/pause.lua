-- ARGV: qp, 'pause' or 'resume'. Returns 1 when the queue was registered just now.
if ARGV[2] == 'pause' then
  redis.call('HSET', K_meta, 'paused', 1)
else
  redis.call('HDEL', K_meta, 'paused')
  wake()
end
return register()
