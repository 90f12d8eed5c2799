"""Starting the server: mistakes an operator can make fail at once with a message that says what to fix."""

from __future__ import annotations

import pytest

from kedascaler.server.app import ScalerServer


async def test_a_taken_port_fails_at_start_naming_the_address(board):
    first = ScalerServer(board, port=0, host="127.0.0.1")
    port = await first.start()
    try:
        second = ScalerServer(board, port=port, host="127.0.0.1")
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await second.start()
    finally:
        await first.stop(grace=0)


async def test_starting_twice_is_refused(server):
    with pytest.raises(RuntimeError, match="already started"):
        await server.start()


@pytest.mark.parametrize("bad", [0, -5])
def test_stale_after_must_be_positive(board, bad):
    with pytest.raises(ValueError, match="stale_after"):
        ScalerServer(board, stale_after=bad)


async def test_stop_and_wait_before_start_return_at_once(board):
    server = ScalerServer(board, port=0)
    await server.stop()
    await server.wait_for_termination()
    assert server.port is None
