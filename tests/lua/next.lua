-- expect: global 'next'
function filter(msg) return next({a = 1}) == "a" end
