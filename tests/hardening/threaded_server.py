"""A ScalerServer on its own event loop in a background thread, for tests that call it synchronously."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kedascaler.loop.board import DecisionBoard
from kedascaler.server.app import ScalerServer


class ThreadedServer:
    def __init__(self, board: DecisionBoard, **kwargs: Any) -> None:
        self.board = board
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-grpc-loop", daemon=True)
        self._thread.start()
        self.server = self.call(self._make(board, kwargs))
        self.port: int = self.call(self.server.start())

    @staticmethod
    async def _make(board: DecisionBoard, kwargs: dict[str, Any]) -> ScalerServer:
        return ScalerServer(board, port=0, host="127.0.0.1", **kwargs)

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self, grace: float = 0.0) -> None:
        self.call(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
