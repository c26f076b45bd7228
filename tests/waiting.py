"""Waiting in tests for what another process does: asked again until it holds, within a
deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time

import aiohttp


async def until(check, seconds: float, what: str, every: float = 0.02):
    """Ask `check` (a coroutine function) until it gives something true; its answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(every)


async def get_json(client: aiohttp.ClientSession, url: str) -> dict | None:
    """The JSON of a 200 at `url`; None for any other answer or none."""
    try:
        async with client.get(url) as response:
            return await response.json() if response.status == 200 else None
    except aiohttp.ClientError:
        return None
