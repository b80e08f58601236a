-- expect: instruction budget
while true do end
function filter(msg) return true end
