-- expect: global 'package'
function filter(msg) return package.loadlib("libc.so.6", "system") ~= nil end
