-- ARGV: qp, op, id.
--   deps: -> {pending {ref, state, ...}, processed {ref, value, ...}, ignored {ref, reason, ...}}
--   parents: -> {ref, ...} of the parents that still exist
--   window: -> the job holding window id (now = ARGV[4]), or false
--   unwindow: free window id -> 1 when it was held, else 0
local op, id = ARGV[2], ARGV[3]
if op == 'deps' then
  local pending = {}
  for _, ref in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'dp:' .. id)) do
    local st = redis.pcall('HGET', rjk(ref), 'st')
    pending[#pending + 1] = ref
    pending[#pending + 1] = type(st) == 'string' and st or ''
  end
  return {pending, redis.call('HGETALL', ARGV[1] .. 'dv:' .. id),
    redis.call('HGETALL', ARGV[1] .. 'di:' .. id)}
elseif op == 'parents' then
  local out = {}
  for _, ref in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'pa:' .. id)) do
    if redis.call('EXISTS', (rjk(ref))) == 1 then
      out[#out + 1] = ref
    end
  end
  return out
end
local wkey = ARGV[1] .. 'de:' .. id
local w = redis.call('HMGET', wkey, 'j', 'x')
local held = w[1] and redis.call('EXISTS', jk(w[1])) == 1 and
  not (w[2] and w[2] ~= '' and tonumber(w[2]) <= tonumber(ARGV[4]))
if op == 'window' then
  return held and w[1] or false
end
redis.call('DEL', wkey)
redis.call('SREM', ARGV[1] .. 'windows', id)
return held and 1 or 0
