-- expect: global 'loadfile'
function filter(msg) return loadfile("/etc/passwd") end
