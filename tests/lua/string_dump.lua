-- expect: field 'dump'
function filter(msg) return #string.dump(filter) > 0 end
