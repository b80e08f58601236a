-- expect: __gc and __mode
function filter(msg) setmetatable({}, {__mode = "k"}) return true end
