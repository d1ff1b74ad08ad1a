"""Labspace: a JupyterHub distribution for research workspaces."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labspace")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
