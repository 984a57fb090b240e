"""uvicorn's HTTP protocol with the redirect fast path answered in place.

    uvicorn shortener_site.asgi:application --http links.protocol:FastRedirectProtocol

uvicorn runs every request as an asyncio task that calls the ASGI application,
whose two `send` messages it checks and turns into bytes. For a redirect that
was most of a worker's time (docs/performance.md). This protocol asks the fast
path (links.fastpath) as soon as a request's headers are read: the same rules,
the same answers and clicks, but written straight to the connection with no
task. Whatever the fast path does not answer at once (Django's requests, a
PostgreSQL miss) goes the usual ASGI way, through the same application.

One difference in what is counted: a click is counted when its answer is
written. Requests pipelined by a client that then drops the connection are
answered (and counted) here, where uvicorn would not have started their tasks.
"""

import logging
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    # uvicorn imports this module before the application, that is before
    # Django's settings: links.fastpath is imported with the application.
    from links.fastpath import Answer, RedirectFastPath

logger = logging.getLogger(__name__)


def header_lines(headers) -> bytes:
    """Headers as they go on the wire: `name: value` and CRLF each."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


def fast_path_of(app) -> "RedirectFastPath | None":
    """The fast path of the application uvicorn serves, under the middleware
    uvicorn wraps around it (proxy headers), each of which keeps it as `.app`."""
    while app is not None:
        fast_path = getattr(app, "fast_path", None)
        if fast_path is not None:
            return fast_path
        app = getattr(app, "app", None)
    return None


class FastRedirectProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # uvicorn's access log would miss the requests answered here: with it on,
        # every request goes the ASGI way. (So would its trace log of ASGI messages.)
        self.fast_path = None if self.access_log else fast_path_of(self.app)
        # When this connection, idle since its last answer, is to be closed
        # (the event loop's clock); None while a request is being read or answered.
        self._idle_until: float | None = None
        # uvicorn's default headers (its Date, refreshed every second, as on
        # every other answer) as they go on the wire: the list they were made
        # from, and their lines. Made again when uvicorn replaces the list.
        self._defaults_made: tuple[list, bytes] = ([], b"")

    # The keep-alive timeout, kept with one timer per idle spell. uvicorn arms a
    # timer after every answer and cancels it when the next request's bytes
    # arrive: with uvloop that pair cost 3-4 µs, a tenth of a redirect
    # (docs/performance.md, 2026-11-30). Here an answer only moves the deadline;
    # the timer, when it fires, closes the connection if it has been idle that
    # long, waits for the deadline if it moved, and stops while a request is
    # under way (its answer arms it again). The same rule as uvicorn's: closed
    # `timeout_keep_alive` seconds after its last answer with nothing since.

    def _unset_keepalive_if_required(self) -> None:
        # Called when a request's bytes arrive (uvicorn's data_received), when
        # a request goes the ASGI way (_start_asgi_task) and when the connection
        # is lost: the connection is busy, and the timer, if it fires, stops.
        self._idle_until = None

    def on_response_complete(self) -> None:
        # uvicorn's, but for how the keep-alive timeout is armed.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_until = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_until = self.loop.time() + self.timeout_keep_alive
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(self._idle_until, self._keep_alive_expired)

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_until is None:
            return  # a request under way; its answer arms the timer again
        if self.loop.time() < self._idle_until:
            self.timeout_keep_alive_task = self.loop.call_at(self._idle_until, self._keep_alive_expired)
        else:
            self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _start_asgi_task(self, cycle, app) -> None:
        # Called with a request's headers read, in order (a pipelined request
        # only once the one before it is answered). The ASGI way, as uvicorn
        # does it, when:
        # - `app` is not the application (uvicorn answers 503 itself: limit_concurrency);
        # - the client asked for 100-continue;
        # - the client is not reading its answers (flow control waits for it);
        # - pipelined requests are queued: answering here would start the next
        #   one from inside this call, a recursion as deep as the queue.
        # and for whatever answer_in_place leaves (Django's requests, a PostgreSQL miss).
        answer = None
        if (
            self.fast_path is not None
            and app is self.app
            and not cycle.waiting_for_100_continue
            and not self.flow.write_paused
            and not self.pipeline
        ):
            try:
                answer = self.fast_path.answer_in_place(cycle.scope)
            except Exception:
                # The ASGI way meets the same fault inside uvicorn's handling:
                # a 500 and its traceback, against this request.
                logger.exception("the redirect fast path failed in uvicorn's protocol")
        if answer is None:
            # An answer written here earlier in the same data_received set a
            # keep-alive deadline after the bytes marked the connection busy: it
            # must not close the connection while this request's task runs
            # (uvicorn arms its timer only after a task).
            self._unset_keepalive_if_required()
            super()._start_asgi_task(cycle, app)
            return
        # What RequestResponseCycle.send does for a complete response.
        cycle.response_started = cycle.response_complete = True
        self.transport.write(
            self._response_bytes(answer, head=cycle.scope["method"] == "HEAD", close=not cycle.keep_alive)
        )
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def _response_bytes(self, answer: "Answer", *, head: bool, close: bool) -> bytes:
        # Without uvicorn's check of each header value: the fast path gives a
        # Location only for a URL of printable ASCII (RedirectFastPath._answer).
        content = [STATUS_LINE[answer.status], self._default_header_lines(), answer.header_lines]
        if close:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if not head:
            content.append(answer.body)
        return b"".join(content)

    def _default_header_lines(self) -> bytes:
        # uvicorn replaces the list when the date changes; the one kept here
        # cannot be freed and its address reused while it is compared.
        defaults = self.server_state.default_headers
        made_from, lines = self._defaults_made
        if made_from is not defaults:
            lines = header_lines(defaults)
            self._defaults_made = (defaults, lines)
        return lines
