#!/usr/bin/env python3
"""A minimal WebSocket echo server and a looping client for bench/soak.sh (stdlib only).

  soak_ws.py server PORT            echo every text frame back
  soak_ws.py client HOST:PORT SECS  open a socket through kura, send/receive a message per
                                    100 ms, reconnect every 20 s; print "ok N failed M" at the end
"""
import base64, hashlib, os, socket, struct, sys, threading, time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def read_frame(s):
    b1, b2 = recv_exact(s, 2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if b2 & 0x80 else None
    data = recv_exact(s, n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b1 & 0x0F, data


def frame(op, data, masked):
    head = bytes([0x80 | op])
    n = len(data)
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if masked:
        mask = os.urandom(4)
        return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return head + data


def serve_one(c):
    try:
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = c.recv(4096)
            if not chunk:
                return
            req += chunk
        key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
        acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        while True:
            op, data = read_frame(c)
            if op == 8:
                c.sendall(frame(8, b"", False))
                return
            c.sendall(frame(op, data, False))
    except (EOFError, OSError, IndexError):
        pass
    finally:
        c.close()


def server(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(256)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


def client(addr, secs):
    host, port = addr.rsplit(":", 1)
    ok = failed = 0
    end = time.time() + secs
    while time.time() < end:
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            key = base64.b64encode(os.urandom(16))
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: ws.soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            if b" 101 " not in head.split(b"\r\n")[0]:
                raise OSError("no upgrade: %r" % head[:40])
            until = min(end, time.time() + 20)
            while time.time() < until:
                msg = os.urandom(8).hex().encode()
                s.sendall(frame(1, msg, True))
                op, data = read_frame(s)
                if data != msg:
                    raise OSError("wrong echo")
                ok += 1
                time.sleep(0.1)
            s.sendall(frame(8, b"", True))
            s.close()
        except (OSError, EOFError) as e:
            failed += 1
            time.sleep(0.5)
    print("ok %d failed %d" % (ok, failed))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], float(sys.argv[3]))
