-- expect: global 'os'
function filter(msg) return os.execute("id") == 0 end
