-- expect: global 'load'
function filter(msg) return load("\27Lua\84\0", "x", "b") ~= nil end
