-- expect: index a boolean value
function filter(msg) return getmetatable(_ENV).__index.load ~= nil end
