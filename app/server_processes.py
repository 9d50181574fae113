"""`shopmind serve --workers N`: N uvicorn processes, each accepting on a listening socket of its own.

uvicorn's own multi-process mode shares one listening socket, and the process that wakes first
accepts every connection waiting at that moment. A client that opens its keep-alive pool at once (a
shop's web servers after a deploy, a load test) was seen to land 46 of 50 connections on one process
while the other idled, and that process's queue then set the latency of them all. Here each process
has its own socket on the same port (SO_REUSEPORT), and the kernel spreads new connections across the
sockets by hash, so each process gets its share whenever the connections were opened.

Supervision is kept small: a process that dies is started again on its socket (connections that
arrived meanwhile wait in that socket's queue), and SIGTERM or SIGINT stops them all gracefully.
Where the platform lacks SO_REUSEPORT, uvicorn's own multi-process mode is used.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

APP = "app.asgi:app"
RESTART_PAUSE_SECONDS = 1.0
"""Wait before restarting a process that died, so an app that cannot start does not spin."""


def run(host: str, port: int, workers: int, **options: Any) -> None:
    """Serve `APP` on host:port with `workers` processes until SIGTERM or SIGINT."""
    if workers <= 1 or port == 0 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, host=host, port=port, workers=workers, **options)
        return
    config = uvicorn.Config(APP, host=host, port=port, **options)
    sockets = [_listener(host, port) for _ in range(workers)]
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes: list[BaseProcess] = []
    try:
        for sock in sockets:
            processes.append(spawn.Process(target=_serve, args=(config, sock), daemon=True))
            processes[-1].start()
        while not stop.wait(0.5):
            for k, process in enumerate(processes):
                if process.exitcode is not None and not stop.is_set():
                    log.warning("server process %s exited (%s); starting it again", process.pid, process.exitcode)
                    stop.wait(RESTART_PAUSE_SECONDS)
                    processes[k] = spawn.Process(target=_serve, args=(config, sockets[k]), daemon=True)
                    processes[k].start()
    finally:
        for process in processes:
            if process.exitcode is None:
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in processes:
            process.join(timeout=30)
            if process.exitcode is None:
                process.kill()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _serve(config: uvicorn.Config, sock: socket.socket) -> None:
    """One server process: uvicorn on its own socket (it listens, and stops on SIGTERM/SIGINT)."""
    uvicorn.Server(config).run(sockets=[sock])
