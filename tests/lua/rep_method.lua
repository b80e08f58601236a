-- expect: string.rep: result over
function filter(msg) return #("x"):rep(1 << 40) > 0 end
