#!/usr/bin/env python3
"""relay.py PORT TARGET_PORT: a ship that passes every connection on.

Listens on 127.0.0.1:PORT and, for each connection, connects to
127.0.0.1:TARGET_PORT and copies bytes both ways unchanged until either
side closes (then it closes the other side's write direction). Lets a
test keep its ship stand-in in its own process (a recorder) while the
ship's port is held by the ship's own process, as Mothership requires."""
import socket
import sys
import threading

port, target = int(sys.argv[1]), int(sys.argv[2])


def pump(src, dst):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        return
    a = threading.Thread(target=pump, args=(client, upstream), daemon=True)
    b = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    a.start()
    b.start()
    a.join()
    b.join()
    client.close()
    upstream.close()


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
