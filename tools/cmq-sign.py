#!/usr/bin/env python3
"""cmq-sign.py: print a signed CMQ request for curl (docs/cmq.md "Trying it with curl").

    tools/cmq-sign.py [--get] [--sha256] HOST:PORT SECRET_ID SECRET_KEY Action=SendMessage k=v ...

Adds SecretId, Nonce, Timestamp (and SignatureMethod with --sha256), signs as
CMQ does (METHOD + host:port + /v2/index.php + "?" + sorted k=v, "_" in keys as
".", values unencoded; HMAC-SHA1 or HMAC-SHA256, base64) and prints the
x-www-form-urlencoded parameters: the POST body, or with --get the query string."""
import base64
import hashlib
import hmac
import random
import sys
import time
import urllib.parse


def main(argv):
    get = "--get" in argv
    sha256 = "--sha256" in argv
    args = [a for a in argv if a not in ("--get", "--sha256")]
    if len(args) < 4:
        sys.exit(__doc__)
    host, secret_id, secret_key = args[:3]
    params = dict(a.split("=", 1) for a in args[3:])
    params.update(SecretId=secret_id, Nonce=str(random.randint(1, 2**62)),
                  Timestamp=str(int(time.time())))
    if sha256:
        params["SignatureMethod"] = "HmacSHA256"
    src = ("GET" if get else "POST") + host + "/v2/index.php?" + "&".join(
        k.replace("_", ".") + "=" + params[k] for k in sorted(params))
    mac = hmac.new(secret_key.encode(), src.encode(), hashlib.sha256 if sha256 else hashlib.sha1)
    params["Signature"] = base64.b64encode(mac.digest()).decode()
    print(urllib.parse.urlencode(params))


if __name__ == "__main__":
    main(sys.argv[1:])
