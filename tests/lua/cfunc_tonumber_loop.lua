-- expect: instruction budget
function filter(msg)
  local s = ("1"):rep(1000000)
  for i = 1, 1000000 do tonumber(s) end
  return true
end
