"""A warm pool member's Python: everything imported before it has a user,
then turned into one user's workspace (``python -m labspace.singleuser``).

``preload()`` does the slow, identity-free part of a workspace start: it imports
JupyterHub's single-user server, jupyter-server, JupyterLab and the server
extensions the environment enables (2.4 of the 2.7 CPU-seconds a cold local
start costs here), and warms caches that hold nothing of anyone (MIME types).
It starts no thread, no event loop and opens no socket, so the process can be
forked afterwards (the local backend's fork server) or wait as it is (a docker
member).

``become(claim)`` turns the process into the workspace a cold start with the
same ``argv``/``env``/``cwd`` would have made: a new session, the working
folder and umask, no inherited descriptor, a fresh interpreter's signal
handlers, the environment replaced wholesale (nothing of the pool's is left),
``sys.path`` and ``sys.argv`` as ``python -m`` in that folder has them, the
time zone and user site-packages of the new environment, and the command line
and environment that ``ps`` and ``/proc`` show; then JupyterHub's ``main()``.
Where a value the interpreter or an imported module read at startup
(``PYTHON*``, the locale, the single-user app choice) differs from the pool's,
the claim is started by ``exec`` instead: slower, never different.

A claim is a JSON-able dict::

    {"argv": ["/usr/bin/python3", "-m", "labspace.singleuser", "--port=..."],
     "env": {"JUPYTERHUB_API_TOKEN": "...", "HOME": "/home/ada", ...},
     "cwd": "/home/ada"}

Bad input ends the process with exit status 2 and one line naming the key.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import signal
import site
import sys
import tempfile
import threading
import time
from typing import Any, NoReturn

import labspace  # noqa: F401  (first: leaves out jsonschema's IRI grammar)
import labspace.singleuser

# what `python -m labspace.singleuser` imports on its way to serving, the
# expensive ones (`python -X importtime`); a missing optional one is skipped
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterhub.singleuser.extension",
    "jupyterhub.singleuser.mixins",
    "jupyter_server.serverapp",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.sessions.sessionmanager",
    "jupyter_server.gateway.managers",
    "jupyter_client.ioloop",
    "jupyter_client.provisioning",
    "jupyterlab",
    "jupyterlab.labapp",
    "jupyterlab_server",
    "jupyter_lsp",
    "jupyter_server_proxy",
    "jupyter_server_proxy.handlers",
    "jupyter_server_terminals",
    "terminado",
    "notebook_shim",
    "labspace.singleuser",
    "labspace.extensions.apps",
    "labspace.extensions.handlers",
    "labspace.extensions.kernels",
    "labspace.extensions.bundled",
    "IPython.paths",
    "httpx",
    "httpcore",
    "h11",
    "psutil",
    "ctypes",
)

# environment variables read when a module above is imported or when Python
# starts: a claim that sets one differently from the pool is started by exec
IMPORT_TIME_ENV = (
    "JUPYTERHUB_SINGLEUSER_APP",
    "JUPYTERHUB_SINGLEUSER_EXTENSION",
    "JUPYTER_ALLOW_INSECURE_WRITES",
    "JUPYTER_PLATFORM_DIRS",  # jupyter_core.paths.SYSTEM_CONFIG_PATH
    "JUPYTER_USE_PROGRAMDATA",
    "LANG",  # the interpreter's locale and file system encoding
    "LC_ALL",
    "LC_CTYPE",
)

EXIT_BAD_CLAIM = 2
# room a member's process starts with, for the workspace's command line and
# environment as /proc shows them (``show_as``): an argument and a variable
ROOM_ARGUMENT = "--room=" + " " * 4096
ROOM_VARIABLE = "LABSPACE_WARM_ROOM"
ROOM_SIZE = 64 * 1024
PR_SET_MM, PR_SET_MM_ARG_END, PR_SET_MM_ENV_END = 35, 9, 11
_preloaded_env: dict[str, str] | None = None  # as the process was started
_startup_changes: dict[str, str] = {}  # what the interpreter set at startup (locale coercion)
_preloaded_user_site: str | None = None
_preloaded_cwd: str | None = None  # sys.path[0] of `python -m` is the folder it started in


class BadClaim(ValueError):
    """A claim that is not a workspace's argv/env/cwd."""


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``modules`` (those that are installed) and warm identity-free
    caches. Returns the modules that could not be imported."""
    global _preloaded_env, _startup_changes, _preloaded_user_site, _preloaded_cwd
    missing = []
    for name in (*modules, *enabled_server_extensions()):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    import mimetypes

    mimetypes.init()
    started = _exec_environ()
    _preloaded_env = {k: started.get(k, "") for k in _startup_env_keys(started)}
    # PEP 538: in a C locale Python sets LC_CTYPE before any code runs; a cold
    # start with the same locale variables gets the same
    _startup_changes = {
        k: v for k, v in os.environ.items() if k.startswith("LC_") and started.get(k) != v
    }
    _preloaded_user_site = site.USER_SITE if site.ENABLE_USER_SITE else None
    _preloaded_cwd = os.getcwd()
    if threading.active_count() != 1:
        raise RuntimeError(
            "preload started a thread: "
            + ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        )
    return missing


def enabled_server_extensions() -> list[str]:
    """The jupyter-server extensions the environment and the system enable
    (``jpserver_extensions`` in ``<prefix>/etc/jupyter``, ``/etc/jupyter``; a
    user's own config is read by their server only), e.g. panel's, voila's."""
    from jupyter_core.paths import ENV_CONFIG_PATH, SYSTEM_CONFIG_PATH

    names: dict[str, bool] = {}
    for folder in [*SYSTEM_CONFIG_PATH[::-1], *ENV_CONFIG_PATH[::-1]]:
        d = os.path.join(folder, "jupyter_server_config.d")
        files = sorted(glob.glob(os.path.join(d, "*.json")))
        files.append(os.path.join(folder, "jupyter_server_config.json"))
        for path in files:
            try:
                with open(path) as f:
                    config = json.load(f)
                names.update(config["ServerApp"]["jpserver_extensions"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return [name for name, on in names.items() if on is True and isinstance(name, str)]


def check_claim(claim: Any) -> tuple[list[str], dict[str, str], str]:
    """``claim`` as (argv, env, cwd), or ``BadClaim`` naming what is wrong."""
    if not isinstance(claim, dict):
        raise BadClaim(f"claim: expected an object with argv, env, cwd, not {type(claim).__name__}")
    unknown = sorted(set(claim) - {"argv", "env", "cwd", "umask"})
    if unknown:
        raise BadClaim(
            f"claim: unknown key(s) {', '.join(map(repr, unknown))}"
            " (allowed: argv, env, cwd, umask)"
        )
    umask = claim.get("umask")
    if umask is not None and (type(umask) is not int or not 0 <= umask <= 0o777):
        raise BadClaim("claim.umask: expected an integer 0..0o777 (or leave it out)")
    argv, env, cwd = claim.get("argv"), claim.get("env"), claim.get("cwd")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise BadClaim("claim.argv: expected a non-empty list of strings (the workspace command)")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise BadClaim("claim.env: expected an object of string names to string values")
    for k, v in env.items():
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise BadClaim(f"claim.env: {k!r} is not a valid environment variable")
    if any("\0" in a for a in argv):
        raise BadClaim("claim.argv: an argument contains a NUL byte")
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd:
        raise BadClaim("claim.cwd: expected an absolute path (the workspace's home)")
    if not os.path.isdir(cwd):
        raise BadClaim(f"claim.cwd: {cwd} is not a folder")
    return list(argv), dict(env), cwd


def _startup_env_keys(env) -> set[str]:
    """Names whose value Python or an imported module used at startup (HOME:
    the user site-packages, which ``become`` swaps)."""
    return {k for k in env if k.startswith("PYTHON")} | set(IMPORT_TIME_ENV)


def _exec_environ() -> dict[str, str]:
    """The environment this process was started with (``/proc/self/environ``:
    before the interpreter changed anything), else today's."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environ)
    items = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {os.fsdecode(k): os.fsdecode(v) for k, v in items}


def _on_path(command: str, env: dict[str, str]) -> str:
    """``command`` as an exec of it with ``env`` finds it (``python``: on PATH)."""
    if "/" in command:
        return command
    return shutil.which(command, path=env.get("PATH", os.defpath)) or command


def needs_exec(argv: list[str], env: dict[str, str]) -> str | None:
    """Why this claim cannot run in the preloaded process (None: it can)."""
    if _preloaded_env is None:
        return "not preloaded"
    if argv[1:3] != ["-m", "labspace.singleuser"]:
        return f"command is not `python -m labspace.singleuser` ({argv[:3]})"
    if os.path.realpath(_on_path(argv[0], env)) != os.path.realpath(sys.executable):
        return "another interpreter"
    for k in _startup_env_keys(env) | _startup_env_keys(_preloaded_env):
        if env.get(k, "") != _preloaded_env.get(k, ""):
            return f"{k} differs from the pool's"
    return None


def become(claim: Any) -> NoReturn:
    """Turn this process into the workspace ``claim`` describes, as a cold
    start would; never returns. A bad claim: exit status 2 and a message.

    The caller has closed what it opened (sockets, pipes); every other file
    descriptor above 2 is closed here, as ``Popen(close_fds=True)`` does."""
    try:
        argv, env, cwd = check_claim(claim)
    except BadClaim as e:
        print(f"labspace warm member: refused: {e}", file=sys.stderr, flush=True)
        os._exit(EXIT_BAD_CLAIM)
    why_exec = needs_exec(argv, env)
    _reset_process(cwd, claim.get("umask"))
    if why_exec:
        sys.stdout.flush()
        sys.stderr.flush()
        try:  # found on the claim's PATH, as Popen finds it
            os.execvpe(argv[0], argv, env)  # noqa: S606 - the workspace command
        except OSError as e:
            print(f"labspace warm member: cannot run {argv[0]}: {e}", file=sys.stderr, flush=True)
            os._exit(127)
    os.environ.clear()
    os.environ.update({**env, **_startup_changes})
    if not show_as(argv, env) and ROOM_VARIABLE in _exec_environ():
        print(
            "labspace warm member: the workspace's command line or environment is larger than"
            " the room the fork server has; ps and /proc show the pool's",
            file=sys.stderr,
            flush=True,
        )
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    time.tzset()  # TZ
    _swap_paths(cwd)
    # what `python -m labspace.singleuser ARGS` has as sys.argv
    sys.argv = [labspace.singleuser.__file__, *argv[3:]]
    from jupyterhub.singleuser import main

    main()
    sys.exit(0)


def show_as(argv: list[str], env: dict[str, str]) -> bool:
    """Make ``/proc/<pid>/cmdline`` and ``/proc/<pid>/environ`` (``ps``, tools
    that find a workspace by its command) show ``argv`` and ``env``, as after
    an exec: both are written over the blocks the process started with when
    they fit (the fork server starts with ``ROOM_ARGUMENT`` and
    ``ROOM_VARIABLE``). Where the process may (CAP_SYS_RESOURCE) the blocks are
    also cut to size; else they end in NUL padding. False: left as they were."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
    except (OSError, ValueError, IndexError):
        return False
    args = b"".join(os.fsencode(a) + b"\0" for a in argv)
    envs = b"".join(os.fsencode(f"{k}={v}") + b"\0" for k, v in env.items())
    if len(args) > arg_end - arg_start or len(envs) > env_end - env_start:
        return False
    import ctypes

    # nothing refers to the old strings any more: os.environ.clear() unset
    # them all, and Python keeps its own copies of argv
    ctypes.memmove(env_start, envs.ljust(env_end - env_start, b"\0"), env_end - env_start)
    ctypes.memmove(arg_start, args.ljust(arg_end - arg_start, b"\0"), arg_end - arg_start)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_MM, PR_SET_MM_ENV_END, ctypes.c_ulong(env_start + len(envs)), 0, 0)
    libc.prctl(PR_SET_MM, PR_SET_MM_ARG_END, ctypes.c_ulong(arg_start + len(args)), 0, 0)
    return True


def _reset_process(cwd: str, umask: int | None) -> None:
    """What Popen(start_new_session=True, cwd=...) and a new interpreter give:
    a new session, no inherited descriptors, Python's signal handlers."""
    os.chdir(cwd)
    if umask is not None:
        os.umask(umask)
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except PermissionError:
            # already a process group leader (python under tini in a container):
            # a cold start there keeps its session too
            if os.getpgid(0) != os.getpid():
                raise
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _swap_paths(cwd: str) -> None:
    """sys.path as `python -m` started in ``cwd`` with this HOME has it: the
    start folder first, the pool's user site-packages out, the user's in
    (where it exists)."""
    if sys.path and sys.path[0] == _preloaded_cwd:
        sys.path[0] = cwd
    if _preloaded_user_site and _preloaded_user_site in sys.path:
        sys.path.remove(_preloaded_user_site)
    site.USER_BASE = site.USER_SITE = None  # computed again from HOME
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site):
        site.addsitedir(user_site)
