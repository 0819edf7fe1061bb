#!/usr/bin/env python3
"""A loopback HTTP/1.1 server for coropool's tests and demo.

Binds 127.0.0.1 on the given port (0: any free one), prints "PORT <n>" on stdout once it
listens, and serves until killed. Paths:
  /text/ANY            200 text/plain "hello\\n"
  /status/N            status N
  /bytes/N             N bytes of 'x'
  /delay/MS            200 after MS milliseconds
  /redirect/N          302 to /redirect/N-1; /redirect/0 is 200
  /redirect-to?url=U   302 to U
  /reset               resets the connection without a response
  /drip/N/MS           a Content-Length of N, one byte every MS milliseconds
  /flaky/KEY/N/SECS    the first N requests for KEY get 503 with Retry-After: SECS, then 200
  /count/KEY           how many requests for /flaky/KEY... and /seen/KEY came in
  /seen/KEY            200, counted under KEY
  /conn/KEY            200, and the connection it came on noted under KEY
  /conns/KEY           how many distinct connections /conn/KEY requests came on
  /hangup/ANY          200 "bye\\n" as if the connection stayed open, then closes it
  /gzip/N              N bytes of 'x', gzip-encoded when the request accepts gzip
  /set-cookie?K=V&...  200, with a Set-Cookie "K=V; Path=/" for each pair (max_age=S adds
                       Max-Age=S to all of them)
  /robots.txt          the file named by $COROPOOL_TEST_ROBOTS, read anew each time (404 when
                       there is none; a first line "status: N" answers N), counted under
                       "robots"
  /echo/ANY            any method: 200 with the method, Content-Type, Accept, Cookie and the body
                       received, each after a "NAME: " line, so a client's request can be
                       compared with curl's
"""
import gzip
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

counts = {}
conns = {}
lock = threading.Lock()


def bump(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="text/plain", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        text = b"method: %s\ncontent-type: %s\naccept: %s\ncookie: %s\nlength: %d\nbody:\n" % (
            self.command.encode(),
            (self.headers.get("Content-Type") or "-").encode(),
            (self.headers.get("Accept") or "-").encode(),
            (self.headers.get("Cookie") or "-").encode(),
            len(body),
        )
        self.reply(200, text + body, "application/octet-stream")

    def do_POST(self):
        if urlparse(self.path).path.startswith("/echo"):
            self.echo()
        else:
            self.do_GET()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def do_GET(self):
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        head = parts[0] if parts else ""
        try:
            if head == "echo":
                self.echo()
            elif head == "gzip":
                body = b"x" * int(parts[1])
                if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    # mtime 0: the same bytes on every request (the time in the header made a
                    # comparison with curl's copy fail when the two straddled a second)
                    self.reply(200, gzip.compress(body, mtime=0), headers=[("Content-Encoding", "gzip")])
                else:
                    self.reply(200, body)
            elif head == "text":
                self.reply(200, b"hello\n")
            elif head == "set-cookie":
                pairs = parse_qs(url.query)
                age = pairs.pop("max_age", [None])[0]
                extra = "; Max-Age=%s" % age if age else ""
                cookies = [("Set-Cookie", "%s=%s; Path=/%s" % (k, v[0], extra)) for k, v in pairs.items()]
                self.reply(200, b"cookies\n", headers=cookies)
            elif head == "robots.txt":
                bump("robots")
                path = os.environ.get("COROPOOL_TEST_ROBOTS")
                if path and os.path.exists(path):
                    with open(path, "rb") as f:
                        text = f.read()
                    if text.startswith(b"status: "):
                        self.reply(int(text.split()[1]), b"robots.txt, not today\n")
                    else:
                        self.reply(200, text)
                else:
                    self.reply(404, b"no robots.txt\n")
            elif head == "status":
                code = int(parts[1])
                self.reply(code, ("status %d\n" % code).encode())
            elif head == "bytes":
                self.reply(200, b"x" * int(parts[1]), "application/octet-stream")
            elif head == "delay":
                time.sleep(int(parts[1]) / 1000)
                self.reply(200, b"late\n")
            elif head == "redirect":
                n = int(parts[1])
                if n <= 0:
                    self.reply(200, b"done\n")
                else:
                    self.reply(302, b"", headers=[("Location", "/redirect/%d" % (n - 1))])
            elif head == "redirect-to":
                self.reply(302, b"", headers=[("Location", parse_qs(url.query)["url"][0])])
            elif head == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
            elif head == "drip":
                n, ms = int(parts[1]), int(parts[2])
                self.send_response(200)
                self.send_header("Content-Length", str(n))
                self.end_headers()
                for _ in range(n):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(ms / 1000)
            elif head == "flaky":
                key, n, secs = parts[1], int(parts[2]), parts[3]
                if bump(key) <= n:
                    self.reply(503, b"busy\n", headers=[("Retry-After", secs)])
                else:
                    self.reply(200, b"ok\n")
            elif head == "seen":
                bump(parts[1])
                self.reply(200, b"seen\n")
            elif head == "conn":
                with lock:
                    conns.setdefault(parts[1], set()).add(self.client_address)
                self.reply(200, b"ok\n")
            elif head == "conns":
                with lock:
                    self.reply(200, b"%d\n" % len(conns.get(parts[1], ())))
            elif head == "hangup":
                self.reply(200, b"bye\n")
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            elif head == "headers":
                # the request's headers as received, one "Name: value" per line
                self.reply(200, "".join("%s: %s\n" % kv for kv in self.headers.items()).encode())
            elif head == "raw":
                # replies that break HTTP in the ways servers do, written byte for byte
                raw = {
                    "badstatus": b"HTTP/1.1 abc\r\nContent-Length: 0\r\n\r\n",
                    "http09": b"hello, no status line\n",
                    "status2000": b"HTTP/1.1 2000 Odd\r\nContent-Length: 0\r\n\r\n",
                    "bigheader": b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 200000 + b"\r\nContent-Length: 2\r\n\r\nok",
                    "badchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                    "badlocation": b"HTTP/1.1 302 Found\r\nLocation: http://[::1/x\r\nContent-Length: 0\r\n\r\n",
                }[parts[1]]
                self.wfile.write(raw)
                self.wfile.flush()
                self.close_connection = True
            elif head == "count":
                with lock:
                    self.reply(200, b"%d\n" % counts.get(parts[1], 0))
            else:
                self.reply(404, b"no such path\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = Server(("127.0.0.1", port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
