-- expect: instruction budget
function filter(msg)
  while true do pcall(function() while true do end end) end
end
