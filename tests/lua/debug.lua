-- expect: global 'debug'
function filter(msg) return debug.getregistry() ~= nil end
