#!/usr/bin/env python3
"""TEST upstream for Barbican's end-to-end tests: shows what reached the backend.

- Any request -> 200 JSON {"method", "path", "headers": {lower-name: [values]}, "body_len"}.
  `path` is the request target exactly as received (query included).
- `Upgrade: websocket` at any path -> RFC 6455 handshake (101, Sec-WebSocket-Accept =
  base64(sha1(key + GUID))), then text/binary frames are echoed, pings answered, close
  honoured. The text message "__headers__" is answered with the handshake request's headers
  as JSON, so a test can see which identity headers reached the backend on an upgrade.
- `GET /__upstream/stats` -> {"requests": n, "paths": [last paths]} (not counted itself);
  `POST /__upstream/reset` clears it.

CLI: python3 upstream.py --port N   (N=0 picks a free port; prints "LISTENING <port>")
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 1 << 20
WS_IDLE_S = 30.0

STATS = {"requests": 0, "websockets": 0}
PATHS: deque = deque(maxlen=200)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the peer's
    # delayed ACK stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server_version = "barbican-test-upstream"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt, *args):
        pass

    def read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def headers_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in self.headers.items():
            out.setdefault(k.lower(), []).append(v)
        return out

    def reply_json(self, obj, status=200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Barbican-Test-Upstream", "1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self) -> None:
        if self.path.startswith("/__upstream/"):
            self.read_body()
            if self.path.startswith("/__upstream/stats"):
                with LOCK:
                    return self.reply_json({**STATS, "paths": list(PATHS)})
            if self.path.startswith("/__upstream/reset") and self.command == "POST":
                with LOCK:
                    STATS["requests"] = 0
                    STATS["websockets"] = 0
                    PATHS.clear()
                return self.reply_json({"ok": True})
        upgrade = (self.headers.get("Upgrade") or "").lower()
        if upgrade == "websocket" and self.headers.get("Sec-WebSocket-Key"):
            return self.websocket()
        body = self.read_body()
        with LOCK:
            STATS["requests"] += 1
            PATHS.append(self.path)
        self.reply_json({
            "method": self.command,
            "path": self.path,
            "headers": self.headers_map(),
            "body_len": len(body),
        })

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any

    # ---- websocket ---------------------------------------------------------------------------
    def websocket(self) -> None:
        key = self.headers["Sec-WebSocket-Key"].strip()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        handshake_headers = self.headers_map()
        with LOCK:
            STATS["websockets"] += 1
            PATHS.append(self.path)
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sock = self.connection
        sock.settimeout(WS_IDLE_S)
        try:
            self.ws_loop(handshake_headers)
        except (OSError, ConnectionError, ValueError):
            pass

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("short read")
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        b1, b2 = self.read_exact(2)
        fin = bool(b1 & 0x80)
        opcode = b1 & 0x0F
        masked = bool(b2 & 0x80)
        length = b2 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exact(8))[0]
        if length > MAX_FRAME:
            raise ValueError("frame too large")
        mask = self.read_exact(4) if masked else b"\x00\x00\x00\x00"
        payload = bytearray(self.read_exact(length))
        for i in range(length):
            payload[i] ^= mask[i % 4]
        return fin, opcode, bytes(payload)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(n)
        elif n < 65536:
            header.append(126)
            header += struct.pack("!H", n)
        else:
            header.append(127)
            header += struct.pack("!Q", n)
        self.wfile.write(bytes(header) + payload)
        self.wfile.flush()

    def ws_loop(self, handshake_headers: dict) -> None:
        message = b""
        message_op = 0
        for _ in range(100000):  # bounded
            fin, opcode, payload = self.read_frame()
            if opcode == 0x8:  # close: echo the status code, then stop
                self.send_frame(0x8, payload[:2])
                return
            if opcode == 0x9:
                self.send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                message, message_op = payload, opcode
            elif opcode == 0x0:
                message += payload
            if not fin:
                continue
            if message_op == 0x1 and message == b"__headers__":
                self.send_frame(0x1, json.dumps({"headers": handshake_headers,
                                                 "path": self.path}).encode())
            else:
                self.send_frame(message_op or 0x1, message)
            message, message_op = b"", 0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Barbican test upstream (echo + websocket)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bind", default="127.0.0.1")
    args = p.parse_args(argv)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((args.bind, args.port), Handler)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
