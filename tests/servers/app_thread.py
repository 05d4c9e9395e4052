"""Any aiohttp test app served on 127.0.0.1 from a thread of its own, for tests whose code
under test runs its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web


@contextmanager
def serving_app(make_app: Callable[[], web.Application], name: str = "test-app") -> Iterator[str]:
    """Serve the app ``make_app()`` builds (inside the server's loop) on a free local port
    until the block ends; yields its base URL (``http://127.0.0.1:PORT``)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder.update(runner=runner, url=f"http://127.0.0.1:{runner.addresses[0][1]}")

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["runner"].cleanup())  # type: ignore[attr-defined]

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout=30):
            raise RuntimeError(f"{name} did not start within 30 s")
        yield str(holder["url"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
