-- expect: instruction budget
function filter(msg)
  local s = ("x"):rep(1000000)
  for i = 1, 1000000 do string.find(s, "y", 1, true) end
  return true
end
