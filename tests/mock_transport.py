"""labkit's registry transport answered by a function, for unit tests of the client."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from labkit.oci.transport import Request, Response, Transport


class MockTransport(Transport):
    """Answers every exchange with ``handler(httpx.Request) -> httpx.Response``: tests write
    answers with httpx's conveniences (``json=``, ``text=``, ``url.params``) while the client
    runs on labkit's own transport, redirects and all."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        super().__init__()
        self.handler = handler

    def handle_request(self, request: Request) -> Response:
        answer = self.handler(httpx.Request(request.method, request.url, headers=request.headers,
                                            content=request.content))
        # dict() of httpx.Headers: lower-case names, repeated fields joined by ", ", as labkit's
        return Response(answer.status_code, dict(answer.headers), answer.read(), request)
