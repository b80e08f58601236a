-- expect: %p is not available
function filter(msg) return string.format("%p", {}) ~= "" end
