"""HTTPS echo (tests/e2e/egress/echo.sh): answers GET with the Host, a SHA-256 of the
X-Api-Key header (never the header) and the X-Mine header it got."""
import hashlib
import http.server
import json
import ssl
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        key = self.headers.get("X-Api-Key")
        body = json.dumps({
            "host": self.headers.get("Host"),
            "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key is not None else None,
            "mine": self.headers.get("X-Mine"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer((sys.argv[1], 443), Echo)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2] + "/srv.pem", sys.argv[2] + "/srv.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
