-- expect: instruction budget
function filter(msg)
  local s = ("x"):rep(1000000)
  for i = 1, 1000000 do s:gsub("y", "z") end
  return true
end
