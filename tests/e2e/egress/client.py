"""A GET of https://NAME/ sent to ADDR from inside a sandbox, verified against the
sandbox's system bundle (or CAFILE): what `curl --resolve NAME:443:ADDR` does, with the
base template's Python. Sends `X-Api-Key: sandbox-own` (a rule replaces it) and
`X-Mine: kept` (nothing touches it). Prints `{"issuer", "status", "body"}` or `{"error"}`.

    python3 client.py NAME ADDR [CAFILE]

Used by the egress tests: crates/stasis/tests/egress_secrets.rs, js/egress.test.mjs,
py/test_egress.py."""
import json, socket, ssl, sys
name, addr, cafile = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
try:
    ctx = ssl.create_default_context(cafile=cafile)
    s = ctx.wrap_socket(socket.create_connection((addr, 443), timeout=15), server_hostname=name)
    issuer = dict(x[0] for x in s.getpeercert()["issuer"])["commonName"]
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nX-Api-Key: sandbox-own\r\nX-Mine: kept\r\nConnection: close\r\n\r\n" % name).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    print(json.dumps({"issuer": issuer, "status": head.split(b" ")[1].decode(), "body": json.loads(body)}))
except Exception as e:
    print(json.dumps({"error": repr(e)}))
