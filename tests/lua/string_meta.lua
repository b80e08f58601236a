-- expect: index a boolean value
function filter(msg) getmetatable("").__index.rep = nil return true end
