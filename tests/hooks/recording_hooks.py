"""Spawner hooks for tests/e2e/test_hooks.py, imported by a real hub by name.

Each call appends one JSON line to the file named by LABSPACE_TEST_HOOK_LOG.
A user whose name starts with "broke" is refused, as accounting refuses a person
whose budget is spent.
"""

import json
import os

from tornado import web


def _record(event: str, **fields) -> None:
    with open(os.environ["LABSPACE_TEST_HOOK_LOG"], "a") as f:
        f.write(json.dumps({"event": event, **fields}) + "\n")


async def before_start(spawner, spec):
    _record("before_start", user=spawner.user.name, profile=spec.profile)
    if spawner.user.name.startswith("broke"):
        raise web.HTTPError(402, "Your budget is spent (ask your project lead for more)")


def after_stop(spawner):
    _record("after_stop", user=spawner.user.name)


def check_options(spawner, user_options):
    """Refuses the app "forbidden"; any other app reaches the workspace's environment."""
    app = user_options.get("app")
    _record("check_options", user=spawner.user.name, options=user_options)
    if app == "forbidden":
        raise web.HTTPError(403, "App 'forbidden' is not open to your groups")
    if app:
        spawner.extra_env["LABSPACE_TEST_APP"] = app


async def form_part(spawner):
    return {
        "html": '<select name="app"><option value="viewer">Viewer</option></select>',
        "labels": {"default": "1.00 credits/hour"},
    }
