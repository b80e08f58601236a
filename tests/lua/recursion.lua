-- expect: stack overflow|not enough memory
local function f(n) return 1 + f(n + 1) end
function filter(msg) return f(1) > 0 end
