-- expect: protected metatable
function filter(msg) setmetatable(_ENV, {}) return true end
