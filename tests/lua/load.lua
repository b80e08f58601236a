-- expect: global 'load'
function filter(msg) return load("return 1")() == 1 end
