-- expect: global 'collectgarbage'
function filter(msg) return collectgarbage("count") > 0 end
