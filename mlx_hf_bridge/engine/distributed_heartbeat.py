"""Which rank died: one idle TCP connection between every pair of ranks (ring backend).

MLX's ring notices a dead peer ("[ring] connection to a peer was lost") but does not always hand the
error back to the waiting ``mx.eval``, which then blocks until the watchdog's ``ddp_timeout``. The
operating system closes a process's sockets when it dies, however it dies (SIGKILL, OOM, crash), so an
end-of-file on one of these connections names the dead rank at once. A host that vanishes without
closing them (power loss, network cut) is still caught by the watchdog's timeout.

Set up once per process, collectively, at the first data-parallel ``train()``: every rank listens on a
free port, the ports are exchanged with one ``all_gather``, and rank j connects to every rank i < j at
the address the ring hostfile (``MLX_HOSTFILE``) gives for it. Other backends: no heartbeat (timeout only).
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading

import mlx.core as mx

_HELLO = 4  # bytes: the connecting rank's number


class Heartbeat:
    def __init__(self, world, hosts: list[str]):
        self.rank, self.size = world.rank(), world.size()
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 0))
        server.listen(self.size)
        port = server.getsockname()[1]
        ports = mx.distributed.all_gather(mx.array([port], dtype=mx.int32), group=world).tolist()
        self.peers: dict[socket.socket, int] = {}
        for other in range(self.rank):  # connect down, accept from above
            conn = socket.create_connection((hosts[other], ports[other]), timeout=30)
            conn.sendall(self.rank.to_bytes(_HELLO, "little"))
            self.peers[conn] = other
        server.settimeout(30)
        for _ in range(self.size - 1 - self.rank):
            conn, _ = server.accept()
            self.peers[conn] = int.from_bytes(_recv_exact(conn, _HELLO), "little")
        server.close()
        for conn in self.peers:
            conn.setblocking(False)
        self.dead: list[int] = []
        mx.eval(mx.distributed.all_sum(mx.array([1.0]), group=world))  # every connection is up everywhere

    def poll(self, timeout: float = 0.0) -> list[int]:
        """The ranks whose connection has closed (they died), cumulative."""
        live = [c for c, r in self.peers.items() if r not in self.dead]
        if not live:
            return self.dead
        readable, _, _ = select.select(live, [], [], timeout)
        for conn in readable:
            try:
                data = conn.recv(64)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.dead.append(self.peers[conn])
        return self.dead


def _recv_exact(conn, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("a rank closed its heartbeat connection while connecting")
        data += chunk
    return data


def ring_hosts(size: int) -> list[str] | None:
    """Each rank's IP from the ring backend's JSON hostfile (``[["ip:port", ...], ...]``), else None."""
    path = os.environ.get("MLX_HOSTFILE")
    if not path:
        return None
    try:
        entries = json.loads(open(path).read())
        hosts = [e[0].rsplit(":", 1)[0] if isinstance(e, list) else str(e).rsplit(":", 1)[0] for e in entries]
    except (OSError, ValueError, IndexError, TypeError, AttributeError):
        return None
    return hosts if len(hosts) == size else None


_lock = threading.Lock()
_heartbeat: Heartbeat | None = None
_tried = False


def start(world) -> Heartbeat | None:
    """The process's heartbeat (set up on first call, on every rank together); None where unavailable."""
    global _heartbeat, _tried
    with _lock:
        if not _tried:
            _tried = True
            hosts = ring_hosts(world.size())
            # every rank must take the same branch: the hostfile is the same launch's on every rank
            if hosts is not None:
                _heartbeat = Heartbeat(world, hosts)
        return _heartbeat


def current() -> Heartbeat | None:
    return _heartbeat
