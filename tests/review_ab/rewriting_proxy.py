"""A reverse proxy in front of a real Radicale that behaves like sabre/dav (Nextcloud,
Baikal) or iCloud on PUT: the server changes the card it stores (here: adds a property)
and therefore answers without an ETag (RFC 4918/6352: a server that alters the body
must not return a strong ETag for it). Everything else goes to Radicale unchanged."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

ADDED = "X-SERVER-ADDED:by the server\r\n"
_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
    "accept-encoding",
}


class RewritingProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rewrite_puts: bool = True,
        multiget_500: bool = False,
        drop: tuple[str, ...] = (),
        busy_puts: int = 0,
        locked_puts: int = 0,
    ):
        """``rewrite_puts``: add a property to PUT bodies and drop the ETag of the
        answer. ``multiget_500``: answer addressbook-multiget with a 207 whose every
        href failed (500), as a server with a broken card or a transient error does.
        ``drop``: property names the server does not keep (some drop unknown X- ones)."""
        self.drop = drop
        self.busy_puts = busy_puts
        """The next N PUTs are answered 429 Too Many Requests with Retry-After: 1."""
        self.locked_puts = locked_puts
        """The next N PUTs are answered 423 Locked (no Retry-After), as Xandikos answers
        concurrent writes into one collection."""
        self.upstream = upstream.rstrip("/")
        self.rewrite_puts = rewrite_puts
        self.multiget_500 = multiget_500
        self.client = httpx.Client(timeout=30)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                if self.command == "PUT" and outer.busy_puts > 0:
                    outer.busy_puts -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.command == "PUT" and outer.locked_puts > 0:
                    outer.locked_puts -= 1
                    self.send_response(423)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rewrite = outer.rewrite_puts and self.command == "PUT" and b"END:VCARD" in body
                if outer.multiget_500 and b"addressbook-multiget" in body:
                    self._fail_every_href(body)
                    return
                if rewrite:
                    body = body.replace(b"END:VCARD", ADDED.encode() + b"END:VCARD")
                    for name in outer.drop:
                        body = re.sub(rb"(?m)^" + name.encode() + rb"[;:][^\r\n]*\r?\n", b"", body)
                resp = outer.client.request(
                    self.command, outer.upstream + self.path, content=body, headers=headers
                )
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in _HOP or (rewrite and k.lower() == "etag"):
                        continue
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            def _fail_every_href(self, body: bytes) -> None:
                hrefs = re.findall(rb"<d:href>([^<]*)</d:href>", body)
                out = b"".join(
                    b"<d:response><d:href>" + h + b"</d:href>"
                    b"<d:status>HTTP/1.1 500 Internal Server Error</d:status></d:response>"
                    for h in hrefs
                )
                xml = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">' + out
                xml += b"</d:multistatus>"
                self.send_response(207)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_MKCOL = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()
