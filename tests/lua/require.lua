-- expect: global 'require'
function filter(msg) return require("os") ~= nil end
