-- expect: instruction budget
function filter(msg) while true do end end
