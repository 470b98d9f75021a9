"""A TCP proxy on loopback that trickles the server's answers: a slow store, for real.

``SlowProxy(upstream_host, upstream_port, bytes_per_s)`` listens on a free 127.0.0.1 port and
forwards every connection to the upstream server: requests at full speed, answers at
``bytes_per_s`` in small pieces (each piece arrives well within any read timeout, so only a
whole-download deadline stops a reader). SeaweedFS behind it verifies SigV4 as usual: the
proxy passes bytes unchanged, ``Host`` included.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

PIECE_BYTES = 1024


class SlowProxy:
    def __init__(self, upstream_host: str, upstream_port: int, bytes_per_s: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.bytes_per_s = bytes_per_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            rate = self.bytes_per_s
            threading.Thread(target=self._pump, args=(server, client, rate), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        try:
            while not self._closed.is_set():
                data = src.recv(PIECE_BYTES if rate else 65536)
                if not data:
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
