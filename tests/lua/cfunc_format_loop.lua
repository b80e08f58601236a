-- expect: instruction budget|not enough memory
function filter(msg)
  local s = ("x"):rep(1000000)
  for i = 1, 1000000 do string.format("%s", s) end
  return true
end
