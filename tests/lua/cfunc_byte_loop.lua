-- expect: instruction budget|stack overflow
function filter(msg)
  local s = ("x"):rep(100000)
  for i = 1, 1000000 do string.byte(s, 1, -1) end
  return true
end
