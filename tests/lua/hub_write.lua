-- expect: read-only
function filter(msg) hub.now = function() return 0 end return true end
