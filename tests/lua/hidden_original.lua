-- expect: call a nil value
function filter(msg) return _ENV["\1setmetatable"]({}, {__gc = print}) end
