-- expect: instruction budget
function filter(msg)
  while true do
    local co = coroutine.create(function() while true do end end)
    coroutine.resume(co)
  end
end
