"""The floor every Labspace hub service stands on.

- ``kit.web``: the HubOAuth base handlers (scope checks, one JSON error shape,
  bodies and paths checked first, the OAuth callback, a masked access log) and
  ``make_app``;
- ``kit.db``: ``Database``, an engine with Alembic migrations whose queries run on
  its own thread pool, never on the event loop;
- ``kit.hub``: ``HubClient``, the hub's REST API with retries and paging;
- ``kit.run``: ``run_service``, a service's whole ``main()``: it answers at once
  (503 while it starts), handles its signals and stops within 2 s, and keeps its
  cookie secret; ``ServiceContext``, what the hub tells a service.

This package imports nothing heavy at the top, so that a service can bind its
port before it imports SQLAlchemy, Alembic or JupyterHub.
"""

MAX_BODY = 1024 * 1024  # bytes of a request body (a 413 beyond)
HARD_MAX_BODY = 4 * MAX_BODY  # beyond this tornado closes the connection unread
