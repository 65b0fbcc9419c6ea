"""The polyjobs board: a web UI, a JSON API and Prometheus metrics over every queue.

Needs the ``board`` extra (``pip install 'polyjobs[board]'``)::

    from polyjobs import open_backend
    from polyjobs.board import BoardOptions, serve_board

    async with open_backend("sqlite:///jobs.db") as backend:
        await serve_board(backend, "127.0.0.1", 8787, BoardOptions(read_only=True))
"""

from __future__ import annotations

from polyjobs.board.app import bind_socket, create_app, serve_board
from polyjobs.board.options import TOKEN_ENV, BoardOptions, check_bind, is_loopback

__all__ = [
    "TOKEN_ENV",
    "BoardOptions",
    "bind_socket",
    "check_bind",
    "create_app",
    "is_loopback",
    "serve_board",
]
