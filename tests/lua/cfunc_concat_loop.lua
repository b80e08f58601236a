-- expect: instruction budget|not enough memory
function filter(msg)
  local t = {}
  for i = 1, 1000 do t[i] = ("x"):rep(1000) end
  for i = 1, 1000000 do table.concat(t) end
  return true
end
