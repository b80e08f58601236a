-- expect: instruction budget
function filter(msg)
  local s = "[" .. ("1,"):rep(500000)
  for i = 1, 1000000 do hub.json.decode(s) end
  return true
end
