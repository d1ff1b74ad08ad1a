"""jupyterhub-idle-culler's config file (its ``--config``), not a module to
import: the culler runs it with ``get_config`` in scope. It sets the arbiter
that gives each server its profile's idle timeout (``labspace.culling``)."""

from labspace.culling import Arbiter

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.IdleCuller.cull_arbiter_hook = Arbiter.from_environment()
