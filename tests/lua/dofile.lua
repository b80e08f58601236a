-- expect: global 'dofile'
function filter(msg) return dofile("/etc/passwd") end
