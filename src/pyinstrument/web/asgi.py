"""ASGI middleware that profiles requests: for FastAPI, Starlette and any ASGI application.

``app.add_middleware(ProfilerMiddleware, profile_dir="profiles")`` (or
``ProfilerMiddleware(app, ...)`` around any ASGI app) profiles every HTTP request and
writes a report per request; ``?profile`` returns that request's report instead of the
response, for requests a show callback allows (by default nobody; see ``show_callback``
in :mod:`pyinstrument.wsgi`). Lifespan and websocket connections pass through untouched.
See docs/web.md.

What a report holds: the thread running the event loop, sampled from the request's
start to the application's return. Concurrent requests run interleaved on that one
thread, so a request's report also holds the time the loop spent on the others while it
was waiting; attributing time to the request's own task needs async-aware profiling,
which pyinstrument does not have yet. Synchronous endpoints that the framework runs in a
thread pool (FastAPI's ``def`` routes) are only seen with ``all_threads=True``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from pyinstrument.profiler import Profiler
from pyinstrument.session import Session
from pyinstrument.web.common import ProfilingMiddleware, RequestInfo, headers_mapping, is_local_request

__all__ = ["ProfilerMiddleware", "RequestInfo", "is_local_request", "request_info"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def request_info(scope: Scope) -> RequestInfo:
    """The framework-neutral description of an ASGI HTTP request."""
    client = scope.get("client")
    return RequestInfo(
        method=scope.get("method", "GET"),
        path=scope.get("path") or "/",
        query_string=bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=headers_mapping(
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in scope.get("headers", ())
        ),
        client=str(client[0]) if client else None,
    )


class ProfilerMiddleware(ProfilingMiddleware):
    """Profiles the HTTP requests to the ASGI application ``app``; the options are those
    of :class:`pyinstrument.wsgi.ProfilerMiddleware`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from pyinstrument import agent

        if scope.get("type") != "http" or not agent.pushing():
            await self._call(scope, receive, send)
            return
        # continuous profiles into Pyroscope carry the request's route, kept in its task's context
        with agent.request_route(scope.get("method") or "GET", scope.get("path") or "/", task=True):
            await self._call(scope, receive, send)

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request = request_info(scope)
        show = self.profiling.shows_report(request)
        if not show and not self.profiling.records:
            await self.app(scope, receive, send)
            return
        # bound to this request's task: time it spends awaiting is [await], and
        # concurrent requests' code stays out of its report
        profiler = self.profiling.start(request, async_mode="enabled")
        if profiler is None:
            await self.app(scope, receive, send)
            return
        if show:
            await self._report_instead(request, profiler, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            await self._finish(request, profiler)

    async def _finish(self, request: RequestInfo, profiler: Profiler) -> Optional[Session]:
        try:
            session = self.profiling.stop(profiler)
            if session is not None and self.profiling.records:
                await _off_the_loop(self.profiling.keep, request, session)
            return session
        finally:
            self.profiling.done()

    async def _report_instead(
        self, request: RequestInfo, profiler: Profiler, scope: Scope, receive: Receive, send: Send
    ) -> None:
        held: list = []  # the application's messages, sent only if there is no report

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        finally:
            session = await self._finish(request, profiler)
        report = await _off_the_loop(self.profiling.report_response, session) if session is not None else None
        if report is None:  # profiling or rendering failed (logged): the normal response
            for message in held:
                await send(message)
            return
        content, content_type = report
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(content)).encode("latin-1")),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def _off_the_loop(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` (rendering, file writing) in a worker thread under asyncio, so
    that other requests go on meanwhile; inline under other event loops (trio) and when
    the loop's executor takes no more work (shutting down)."""
    try:
        work = asyncio.get_running_loop().run_in_executor(None, function, *args)
    except RuntimeError:
        return function(*args)
    return await work
