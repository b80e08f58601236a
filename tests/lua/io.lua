-- expect: global 'io'
function filter(msg) return io.open("/etc/passwd") ~= nil end
