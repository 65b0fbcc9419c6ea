-- ARGV: qp, now, n, then n x (id, name, data, opts, ts, run_at, priority, lifo)
-- Returns {registered, id1, added1, id2, added2, ...}
local now = ARGV[2]
local out = {register()}
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 4 + i * 8
  local id, added = add_job(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4],
    ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], now)
  out[#out + 1] = id
  out[#out + 1] = added
end
flush_wake()
return out
