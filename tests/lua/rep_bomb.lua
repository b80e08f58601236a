-- expect: string.rep: result over
function filter(msg) return #string.rep("x", 1000000000) > 0 end
