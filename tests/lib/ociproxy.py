#!/usr/bin/env python3
"""A misbehaving reverse proxy in front of a registry, for client tests.

  ociproxy.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [options]

Options (combinable):
  --log FILE               one line per request: METHOD PATH STATUS auth=<scheme|->
  --fail-first N           answer the first N matching requests with --fail-status
  --fail-status S          (default 503); --retry-after SECS adds Retry-After
  --fail-match REGEX       only requests whose path matches count (default: any)
  --bearer                 demand "Authorization: Bearer <token>" on /v2/; tokens
                           come from a token server on --token-listen (default:
                           /token on this listener)
  --token-listen H:P       separate token server address
  --token-user U --token-pass P   the token server demands Basic U:P
  --token-field NAME       JSON field carrying the token (default: token)
  --redirect-blobs H:P     answer blob GETs with 307 to http://H:P/blob/<digest>;
                           that listener serves the blob from upstream and
                           refuses (400) any request carrying Authorization
  --truncate-first N       cut the first N blob bodies in half (full
                           Content-Length announced, then the connection closes)
  --extra-bytes N          blob bodies get N junk bytes more than they should
  --blob-match REGEX       --truncate-first/--extra-bytes/--chunked only touch
                           blobs whose path matches (default: all)
  --chunked                send blob bodies chunked, without Content-Length
  --content-type T         rewrite the Content-Type of manifest responses
"""
import argparse
import base64
import http.client
import http.server
import json
import re
import secrets
import socket
import threading
import urllib.parse

A = None
LOCK = threading.Lock()
STATE = {"failed": 0, "truncated": 0}
TOKENS = set()


def log(line):
    if A.log:
        with LOCK, open(A.log, "a") as f:
            f.write(line + "\n")


def hostport(s):
    h, _, p = s.rpartition(":")
    return h, int(p)


def upstream(method, path, headers):
    h, p = hostport(A.upstream)
    c = http.client.HTTPConnection(h, p, timeout=30)
    fwd = {k: v for k, v in headers.items()
           if k.lower() in ("accept", "range", "content-type", "content-length")}
    c.request(method, path, headers=fwd)
    return c, c.getresponse()


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.note(status)

    def note(self, status):
        auth = self.headers.get("Authorization")
        log(f"{self.command} {self.path} {status} auth={auth.split()[0] if auth else '-'}")


class TokenHandler(Base):
    def do_GET(self):
        if not self.path.startswith("/token"):
            return self.reply(404)
        if A.token_user is not None:
            want = "Basic " + base64.b64encode(f"{A.token_user}:{A.token_pass}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self.reply(401, b'{"details":"bad credentials"}',
                                  {"WWW-Authenticate": 'Basic realm="token"'})
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        if q.get("service") != ["lttle-test"] or not q.get("scope"):
            return self.reply(400, b'{"details":"service or scope missing"}')
        tok = secrets.token_hex(16)
        with LOCK:
            TOKENS.add(tok)
        self.reply(200, json.dumps({A.token_field: tok, "expires_in": 300}).encode(),
                   {"Content-Type": "application/json"})


class BlobHandler(Base):
    """The redirect target: another origin, which must never see credentials."""

    def do_GET(self):
        if self.headers.get("Authorization"):
            return self.reply(400, b"authorization header leaked to the blob host")
        m = re.match(r"^/blob/([^/?]+)/(sha256:[0-9a-f]{64})", self.path)
        if not m:
            return self.reply(404)
        c, r = upstream("GET", f"/v2/{m.group(1).replace('%2F', '/')}/blobs/{m.group(2)}",
                        self.headers)
        body = r.read()
        c.close()
        self.reply(r.status, body, {"Content-Type": "application/octet-stream"})


class ProxyHandler(Base):
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path
        if path.startswith("/token") and not A.token_listen:
            return TokenHandler.do_GET(self)
        if A.fail_first and re.search(A.fail_match, path):
            with LOCK:
                fail = STATE["failed"] < A.fail_first
                STATE["failed"] += fail
            if fail:
                hdrs = {"Retry-After": A.retry_after} if A.retry_after else {}
                return self.reply(A.fail_status, b'{"errors":[{"code":"UNAVAILABLE",'
                                  b'"message":"try again"}]}', hdrs)
        if A.bearer and path.startswith("/v2/"):
            auth = self.headers.get("Authorization", "")
            tok = auth[7:] if auth.startswith("Bearer ") else None
            with LOCK:
                ok = tok in TOKENS
            if not ok:
                m = re.match(r"^/v2/(.+)/(manifests|blobs)/", path)
                realm = f"http://{A.token_listen or A.listen}/token"
                chal = f'Bearer realm="{realm}",service="lttle-test"'
                if m:
                    chal += f',scope="repository:{m.group(1)}:pull"'
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":'
                                  b'"authentication required"}]}',
                                  {"WWW-Authenticate": chal, "Content-Type": "application/json"})
        blob = re.match(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$", path)
        if blob and A.redirect_blobs and self.command == "GET":
            name = blob.group(1).replace("/", "%2F")
            return self.reply(307, b"", {
                "Location": f"http://{A.redirect_blobs}/blob/{name}/{blob.group(2)}?sig=x"})
        c, r = upstream(self.command, path, self.headers)
        body = r.read()
        c.close()
        hdrs = {k: v for k, v in r.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")}
        if "/manifests/" in path and A.content_type and r.status == 200:
            hdrs["Content-Type"] = A.content_type
        if blob and r.status in (200, 206) and self.command == "GET" and \
                re.search(A.blob_match, path):
            if A.chunked:
                return self.send_chunked(r.status, hdrs, body + b"X" * A.extra_bytes)
            if A.extra_bytes:
                body += b"X" * A.extra_bytes
            with LOCK:
                cut = STATE["truncated"] < A.truncate_first
                STATE["truncated"] += cut
            if cut and len(body) > 1:
                self.send_response(r.status)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.note(f"{r.status}-truncated")
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
        self.reply(r.status, body, hdrs)


    def send_chunked(self, status, hdrs, body):
        self.send_response(status)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 4096):
            part = body[i:i + 4096]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")
        self.note(f"{status}-chunked")


def serve(addr, handler):
    h, p = hostport(addr)
    srv = http.server.ThreadingHTTPServer((h, p), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    global A
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--log")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--retry-after")
    ap.add_argument("--fail-match", default="")
    ap.add_argument("--bearer", action="store_true")
    ap.add_argument("--token-listen")
    ap.add_argument("--token-user")
    ap.add_argument("--token-pass")
    ap.add_argument("--token-field", default="token")
    ap.add_argument("--redirect-blobs")
    ap.add_argument("--truncate-first", type=int, default=0)
    ap.add_argument("--extra-bytes", type=int, default=0)
    ap.add_argument("--content-type")
    ap.add_argument("--blob-match", default="")
    ap.add_argument("--chunked", action="store_true")
    A = ap.parse_args()
    if A.token_listen:
        serve(A.token_listen, TokenHandler)
    if A.redirect_blobs:
        serve(A.redirect_blobs, BlobHandler)
    h, p = hostport(A.listen)
    srv = http.server.ThreadingHTTPServer((h, p), ProxyHandler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
