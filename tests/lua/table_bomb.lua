-- expect: not enough memory|instruction budget
function filter(msg)
  local t = {}
  local s = string.rep("y", 1000)
  for i = 1, 1e9 do t[i] = s .. i end
  return #t > 0
end
