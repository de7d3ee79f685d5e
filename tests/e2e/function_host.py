"""A stand-in for the Functions host's HTTP front, for a real browser: a loopback HTTP server that routes requests to
the function app's HTTP functions (as indexed: route, methods), checks the function key as the host does (`code` in
the query string or the x-functions-key header), and sends back their responses."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from dotenv import dotenv_values

from sync import runtime
from tests.e2e.functions import FUNCTIONS

RUNTIME_CACHES = (runtime.settings, runtime.state, runtime.context, runtime.queue)


@contextmanager
def runtime_of(env_file: str | object, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The function app's runtime configured from a settings file (as app settings), with fresh cached clients."""
    for name, value in dotenv_values(str(env_file)).items():
        if value is not None:
            monkeypatch.setenv(name, value)
    for cached in RUNTIME_CACHES:
        cached.cache_clear()
    try:
        yield
    finally:
        for cached in RUNTIME_CACHES:
            cached.cache_clear()


def _routes() -> list[tuple[re.Pattern[str], set[str], func.Function]]:
    routes = []
    for function in FUNCTIONS:
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] != "httpTrigger":
            continue
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", trigger["route"])
        methods = {str(m.value) if hasattr(m, "value") else str(m) for m in trigger["methods"]}
        routes.append((re.compile(f"^/api/{pattern}$"), methods, function))
    return routes


@contextmanager
def function_host(key: str) -> Iterator[str]:
    """Serve the HTTP functions on 127.0.0.1; yields the base URL. Every request needs `key`."""
    routes = _routes()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if params.get("code") != key and self.headers.get("x-functions-key") != key:
                self.send_error(401)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            for pattern, methods, function in routes:
                match = pattern.match(url.path)
                if match and self.command in methods:
                    request = func.HttpRequest(
                        self.command,
                        f"http://{self.headers['Host']}{self.path}",
                        headers=dict(self.headers.items()),
                        params=params,
                        route_params=match.groupdict(),
                        body=body,
                    )
                    response = function.get_user_function()(request)
                    payload = response.get_body()
                    self.send_response(response.status_code)
                    self.send_header("Content-Type", f"{response.mimetype}; charset={response.charset}")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
            self.send_error(404)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
