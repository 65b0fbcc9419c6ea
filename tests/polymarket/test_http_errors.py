"""Network failures name the host and the cause (refused, DNS...) and, for the Data API,
what to do offline; never just the exception's class name."""

from __future__ import annotations

import socket

import httpx
import pytest

from polyjobs.polymarket.data_api import DataApiClient, DataApiError, DataApiOptions
from polyjobs.polymarket.gamma import GammaClient, GammaError
from polyjobs.polymarket.http_errors import describe_http_error


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_names_host_and_errno() -> None:
    port = closed_port()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.get(f"http://127.0.0.1:{port}/trades")
    described = describe_http_error(raised.value)
    assert described.startswith("127.0.0.1: ") and described.endswith("(ECONNREFUSED)")


async def test_data_api_failure_is_one_line_with_cause_and_hint() -> None:
    options = DataApiOptions(base_url=f"http://127.0.0.1:{closed_port()}", retries=0)
    async with httpx.AsyncClient() as http:
        with pytest.raises(DataApiError) as raised:
            await DataApiClient(http, options).get_page({})
    message = str(raised.value)
    assert "\n" not in message
    assert "cannot reach 127.0.0.1" in message and "ECONNREFUSED" in message
    assert "polyjobs start --demo" in message and "ConnectError" not in message


async def test_gamma_failure_names_the_host() -> None:
    async with httpx.AsyncClient() as http:
        gamma = GammaClient(http, f"http://127.0.0.1:{closed_port()}", timeout=2.0)
        with pytest.raises(GammaError, match=r"cannot reach 127\.0\.0\.1: .*ECONNREFUSED"):
            await gamma.market("0xabc")
