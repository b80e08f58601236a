-- expect: not enough memory
function filter(msg)
  local s = string.rep("x", 1024):rep(1024)
  for i = 1, 40 do s = s .. s end
  return #s > 0
end
