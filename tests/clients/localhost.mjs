// Node resolves names with glibc, which does not map *.localhost to loopback
// (RFC 6761): do it here, as browsers do, so the clients can use instance domains.
import dns from 'node:dns';

const lookup = dns.lookup;
dns.lookup = (host, options, callback) => {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  if (host === 'localhost' || host.endsWith('.localhost')) {
    if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
    return callback(null, '127.0.0.1', 4);
  }
  return lookup(host, options, callback);
};
