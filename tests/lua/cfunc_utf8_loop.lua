-- expect: instruction budget
-- utf8.len scans its whole subject in C, where the count hook never fires.
local s = string.rep("x", 1 << 20)
function filter(msg)
  for i = 1, 1000000 do utf8.len(s) end
  return true
end
