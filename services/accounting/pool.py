"""The warm pool's cost: idle members are the platform's usage, not a user's.

A member of the hub's warm pool (``labspace.warm.pool``) runs before anyone
claims it. From the moment it is ready until it is claimed by a start or gone
(expired, drained at shutdown, destroyed after a failed claim) it is a usage
session of its own:

- key ``warm-pool/<pool key>/<member id>``, user ``(warm pool)``, no project;
- charged to the account ``external:platform`` (no floor: the platform never
  runs out of budget, its balance goes below zero by what the pool cost; no
  warning, no stop, never a user's or a project's money);
- priced per hour at the *lowest* price among the profiles the member may
  become: the pooled profiles (``backend.warm_pool.profiles``; every profile
  when that is empty) whose image is the pool's key (docker: one pool per
  image), else all of them (the local backend's one pool). The cheapest
  workspace the member can become: an idle member holds at least that much of
  a node; 0 when none of them has a price;
- opened by a ``start`` event and closed by a ``stop`` event, both written by
  the hub side (``HubSide.pool_event``) to the same durable outbox as the
  users' sessions, so a pool session is never lost;
- never closed by the reconciler (it is no server of the hub's). Sessions of an
  earlier hub run whose members were never seen going (a killed hub: the next
  pool destroys those members when it starts) are closed by the first pool
  event of the next run, at that event's time.

Once claimed, the workspace is the user's session from the start request on
(``HubSide.before_start``), exactly as a cold start: the claim's own fraction of
a second counts on both.
"""

from __future__ import annotations

POOL_USER = "(warm pool)"  # a name no JupyterHub start uses as a session's user
KEY_PREFIX = "warm-pool/"
ACCOUNT = ("external", "platform")
REPORT_LABEL = "(platform)"  # the pool's usage in reports and metrics by project
MAX_POOL_KEY = 200  # characters of a pool key kept in a session key


def session_key(pool_key: str, member: str) -> str:
    return f"{KEY_PREFIX}{pool_key[:MAX_POOL_KEY]}/{member}"


def is_pool_session(user: str, key: str) -> bool:
    return user == POOL_USER and key.startswith(KEY_PREFIX)
