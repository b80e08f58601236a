-- expect: read-only
function filter(msg) string.rep = function() return "" end return true end
