"""Reading what the channel layer delivered to a test's own listener channel."""

from __future__ import annotations

import asyncio
from typing import Any


async def received_frames(layer: Any, listener: str, *, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every event queued for ``listener`` until none arrives for ``quiet`` seconds."""
    frames = []
    while True:
        try:
            frames.append(await asyncio.wait_for(layer.receive(listener), timeout=quiet))
        except TimeoutError:
            return frames
