"""A fault-injecting HTTP server for the sidecar's MediaWiki side.

It stands between jobdrainer and the real farm Apache: requests for the wikis named in
`faults` get a canned bad answer (or a hang, a trickle, a huge body); every other
request is forwarded to the real MediaWiki, so the test can show that the other wikis
still drain. It also counts requests per second and requests in flight, for the rate
and concurrency limits."""

import http.client
import http.server
import socketserver
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port=None):
        self.upstream_port = upstream_port
        self.faults = {}          # host -> callable(handler) or (status, body, ctype)
        self.default = None       # fault for every host (when no upstream)
        self.lock = threading.Lock()
        self.starts = []          # (time, host)
        self.in_flight = 0
        self.max_in_flight = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                host = self.headers.get("Host", "")
                with proxy.lock:
                    proxy.starts.append((time.time(), host))
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    fault = proxy.faults.get(host, proxy.default)
                    if fault is None:
                        self._forward(body)
                    elif callable(fault):
                        fault(self)
                    else:
                        self.answer(*fault)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def answer(self, status, body, ctype="text/html", headers=()):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. the body cap): that is the test

            def _forward(self, body):
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "content-length")}
                    conn.request("POST", self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    self.answer(r.status, data, r.getheader("Content-Type", "text/html"))
                finally:
                    conn.close()

            def log_message(self, *args):
                pass

        self._handler = Handler
        self.port = 0
        self._listen()

    def _listen(self):
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def refuse(self):
        """Stops listening: connections to the port are refused (MediaWiki down)."""
        self.server.shutdown()
        self.server.server_close()

    def listen_again(self):
        """Listens on the same port again."""
        self._listen()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def count(self, since, until, host=None):
        with self.lock:
            return sum(1 for t, h in self.starts if since <= t < until
                       and (host is None or h == host))

    def hosts(self):
        with self.lock:
            return [h for _, h in self.starts]


def trickle(seconds, chunk=b"{", every=1.0):
    """A fault that sends a 200 header and then one byte a second, for `seconds`."""
    def fault(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(int(seconds / every) + 10))
        handler.end_headers()
        deadline = time.time() + seconds
        try:
            while time.time() < deadline:
                handler.wfile.write(chunk)
                handler.wfile.flush()
                time.sleep(every)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return fault


def slow_ok(seconds, reached="job-limit"):
    """A fault that holds the request, then answers like MediaWiki with one job run."""
    def fault(handler):
        time.sleep(seconds)
        body = ('{"jobs":[{"type":"null","status":"ok","error":null,"time":1}],'
                '"reached":"%s","backoffs":[],"elapsed":1}' % reached).encode()
        handler.answer(200, body, "application/json")
    return fault
