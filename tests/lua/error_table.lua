-- expect: error object is a table value
function filter(msg) error({}) end
