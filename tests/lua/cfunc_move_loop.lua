-- expect: instruction budget
function filter(msg)
  for i = 1, 1000000 do table.move({}, 1, 1000000000, 1) end
  return true
end
