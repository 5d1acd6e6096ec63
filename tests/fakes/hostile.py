"""Hostile HTTP servers on 127.0.0.1 for the transport tests (security cases 40, 45, 50).

Each connection is answered by a `behaviour(conn, server)` in its own thread, on a raw socket, so a
server can do what no well-behaved framework does: drip one byte at a time, promise a 1 GiB body,
send a gzip bomb, an oversized header, or accept and never answer. The server counts connections
and bytes sent, and keeps each request head, so tests can assert what a client did.
"""
import gzip
import socket
import ssl
import threading
import time
import zlib


class HostileServer:
    def __init__(self, behaviour, *, tls: ssl.SSLContext | None = None):
        self.behaviour = behaviour
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.stopped = threading.Event()
        self.connections = 0
        self.sent = 0
        self.heads: list[bytes] = []
        self.server_names: list[str | None] = []
        self._lock = threading.Lock()

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.listener.close()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.behaviour(conn, self)
        except OSError:
            pass  # the client gave up: that is what these servers are for
        finally:
            conn.close()

    # -- helpers for behaviours --------------------------------------------------------------------
    def read_head(self, conn) -> bytes:
        head = b""
        conn.settimeout(10)
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        with self._lock:
            self.heads.append(head)
        return head

    def send(self, conn, data: bytes):
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server stops; True when it should go on."""
        return not self.stopped.wait(seconds)


def head(status="200 OK", content_type="application/json", **headers) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def drip_body(interval: float, *, lasting: float = 8.0):
    """Headers at once, then one byte of body every `interval` s (a per-read timeout never fires).

    It gives up after `lasting` s, so a client without a total deadline is slow but not stuck forever.
    """
    def behaviour(conn, server):
        server.read_head(conn)
        server.send(conn, head(Content_Length=1000))
        ends = time.monotonic() + lasting
        while time.monotonic() < ends and server.wait(interval):
            server.send(conn, b" ")
    return behaviour


def drip_head(interval: float, *, lasting: float = 8.0):
    """The status line and headers themselves, one byte every `interval` s."""
    def behaviour(conn, server):
        server.read_head(conn)
        data = head(Content_Length=2) + b"{}"
        ends = time.monotonic() + lasting
        for byte in data:
            if time.monotonic() > ends or not server.wait(interval):
                return
            server.send(conn, bytes([byte]))
    return behaviour


def black_hole(conn, server):
    """Accepts, reads the request, never answers."""
    server.read_head(conn)
    server.stopped.wait(30)


def endless(advertised: int = 1 << 30, *, at_most: int = 64 << 20):
    """Claims a 1 GiB body and sends zeros as fast as the client reads (up to `at_most`, so a client
    without a cap fills its memory with 64 MiB, not the whole machine's)."""
    def behaviour(conn, server):
        server.read_head(conn)
        server.send(conn, head(content_type="application/octet-stream", Content_Length=advertised))
        block = b"0" * 65536
        while server.sent < at_most and not server.stopped.is_set():
            server.send(conn, block)
    return behaviour


def bomb(encoding: str, inflated: int = 64 << 20) -> bytes:
    """`inflated` bytes of JSON-ish whitespace, compressed (~1000:1)."""
    compress = {"gzip": lambda d: gzip.compress(d, 9), "deflate": lambda d: zlib.compress(d, 9),
                "raw-deflate": lambda d: _raw_deflate(d)}[encoding]
    return compress(b" " * inflated)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def compressed(body: bytes, encoding: str):
    """Serves `body` (already compressed) with Content-Encoding `encoding`."""
    def behaviour(conn, server):
        server.read_head(conn)
        name = "deflate" if encoding == "raw-deflate" else encoding
        server.send(conn, head(Content_Encoding=name, Content_Length=len(body)) + body)
    return behaviour


def oversized_header(size: int = 200_000):
    """A header line larger than any client should accept (h11 stops at 64 KiB)."""
    def behaviour(conn, server):
        server.read_head(conn)
        server.send(conn, head(Content_Length=2, X_Padding="a" * size) + b"{}")
    return behaviour


def reply(body: bytes, *, status: str = "200 OK", content_type: str = "application/json"):
    """An ordinary reply (for bodies that are hostile in themselves: deep JSON, lists, NaN)."""
    def behaviour(conn, server):
        server.read_head(conn)
        server.send(conn, head(status, content_type, Content_Length=len(body)) + body)
    return behaviour
