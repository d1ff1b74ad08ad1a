"""The accounting service: a tornado application authenticated by the hub.

``make_app(service)`` builds the routes under the service prefix:

- ``api/...``: the REST API (``api.py``), OpenAPI at ``api/openapi.json``;
- ``api/internal/...``: the hub side's endpoints, service token only (``internal.py``);
- ``/``, ``projects``, ``admin``: the pages (``pages.py``); ``metrics``: Prometheus;
- ``oauth_callback``: the hub's OAuth redirect.

The handlers' plumbing is ``web.py``; the read models that the API and the pages
share are ``views.py``.
"""

from __future__ import annotations

import json
import os
import secrets

from jupyterhub.services.auth import HubOAuth
from tornado import web

from . import api, internal, pages
from .service import Service
from .web import NotFoundHandler, OAuthCallbackHandler, log_request


def make_app(service: Service, hub_auth: HubOAuth | None = None) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/accounting/")
    hub_auth = hub_auth or HubOAuth(api_token=service.token, cache_max_age=60)
    routes = [
        *api.routes(prefix),
        *internal.routes(prefix),
        *pages.routes(prefix),
        (prefix + "oauth_callback", OAuthCallbackHandler),
    ]
    here = os.path.dirname(__file__)
    base_url = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    hub_prefix = base_url + "hub/"
    try:  # the hub's navigation links of every service (set by labspace.hubconfig)
        nav = json.loads(os.environ.get("LABSPACE_NAV") or "[]")
    except ValueError:
        nav = []
    nav = nav or [
        {"title": "My usage", "url": "/services/accounting/", "admin": False},
        {"title": "Projects", "url": "/services/accounting/projects", "admin": False},
        {"title": "Accounting admin", "url": "/services/accounting/admin", "admin": True},
    ]
    return web.Application(
        routes,
        service=service,
        hub_auth=hub_auth,
        prefix=prefix,
        hub_prefix=hub_prefix,
        base_url=base_url,
        nav=nav,
        template_path=os.path.join(here, "templates"),
        cookie_secret=os.environ.get("JUPYTERHUB_COOKIE_SECRET", "").encode()
        or secrets.token_bytes(32),
        xsrf_cookies=True,
        login_url=hub_auth.login_url,
        log_function=log_request,
        default_handler_class=NotFoundHandler,
    )
