-- expect: __gc and __mode
function filter(msg) setmetatable({}, {__gc = function() end}) return true end
