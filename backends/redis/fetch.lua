-- ARGV: jp, token, limit, now, lease_until
-- Returns {next delayed due time or nil, id, FIELDS..., id, FIELDS..., ...}
local out = take(ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])
local due = false
if #out == 0 then
  due = next_due()
end
table.insert(out, 1, due)
return out
