-- expect: instruction budget
function filter(msg)
  local t = {}
  for i = 1, 100000 do t[i] = (i * 7919) % 100003 end
  for i = 1, 1000000 do table.sort(t) end
  return true
end
