"""A tiny proxied app for trying the catalog: an HTML page and a websocket echo.

    python -m labspace.extensions.demo_app --port {port}
    python -m labspace.extensions.demo_app --unix-socket {unix_socket}

Catalog launch spec: ``{"command": ["python3", "-m", "labspace.extensions.demo_app",
"--port={port}"], "ready_path": "/healthz", "ready_status": 200}``. The tests and
``bench/proxy.py`` use it as the catalog app.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os

from tornado import httpserver, netutil, web, websocket

PAGE = """<!doctype html><html><head><title>Labspace demo app</title></head>
<body><h1>Labspace demo app</h1><p id="greeting">{greeting}</p>
<p>Served from {cwd} for {user}.</p></body></html>"""


class PageHandler(web.RequestHandler):
    def get(self):
        greeting = os.environ.get("DEMO_GREETING", "Hello from the demo app")
        self.finish(
            PAGE.format(
                greeting=html.escape(greeting),
                cwd=html.escape(os.getcwd()),
                user=html.escape(os.environ.get("USER", "?")),
            )
        )


class HealthHandler(web.RequestHandler):
    def get(self):
        self.finish({"status": "ok"})


class EchoHandler(websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True  # reached only through the workspace's proxy, which checks it

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


def make_app() -> web.Application:
    return web.Application(
        [(r"/", PageHandler), (r"/healthz", HealthHandler), (r"/echo", EchoHandler)]
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix-socket", default="")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before listening")
    args = parser.parse_args()
    await asyncio.sleep(args.delay)
    server = httpserver.HTTPServer(make_app())
    if args.unix_socket:
        server.add_socket(netutil.bind_unix_socket(args.unix_socket, mode=0o600))
    else:
        server.listen(args.port, address="127.0.0.1")
    print(f"demo app listening on {args.unix_socket or args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
