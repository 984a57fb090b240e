"""The ASGI application in front of Django: the redirect fast path, and
lifespan events (Django's handler has none), so that pending clicks are
written before a worker exits (and clicks journaled by a killed one added at
start), so that a worker marks the database as served
while it runs (manage.py restore_db refuses to run meanwhile), and so that
the objects of its start-up are set aside from the garbage collector."""

import asyncio
import gc

from links.backups import hold_serving_marker, release_serving_marker
from links.clicks import click_counter
from links.fastpath import RedirectFastPath


class ShortenerApplication:
    def __init__(self, django_application, *, fast_path: RedirectFastPath | None = None):
        self.django_application = django_application
        self.fast_path = fast_path

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if self.fast_path is not None and await self.fast_path.handle(scope, send):
                return
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        await self.django_application(scope, receive, send)

    async def lifespan(self, receive, send) -> None:
        serving_marker = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Waits while a restore runs; held until the worker exits.
                serving_marker = await asyncio.to_thread(hold_serving_marker)
                if self.fast_path is not None:
                    # Connects (and on PostgreSQL starts listening) off the event loop.
                    await asyncio.to_thread(self.fast_path.start)
                    self.fast_path.keep_table()
                await asyncio.to_thread(click_counter.roll_up_left_over)
                set_start_up_objects_aside()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn has stopped taking requests: write what they counted.
                await asyncio.to_thread(click_counter.shutdown)
                if self.fast_path is not None:
                    self.fast_path.close()
                release_serving_marker(serving_marker)
                await send({"type": "lifespan.shutdown.complete"})
                return


def set_start_up_objects_aside() -> None:
    """Move what start-up made (the modules of Django, DRF and the site, the
    settings: about 90,000 objects) out of the cyclic collector's way: its full
    passes walked them all, again and again, while they live as long as the
    worker (docs/performance.md, 2026-11-29, evening). What is made later, on a
    first request, is still collected as usual. Start-up's own garbage is
    collected first."""
    gc.collect()
    gc.freeze()
