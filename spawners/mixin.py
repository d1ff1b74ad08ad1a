"""What every Labspace backend does, whatever runs the workspace.

``LabspaceSpawnerMixin`` goes first in a backend's bases
(``class LabspaceDockerSpawner(LabspaceSpawnerMixin, DockerSpawner)``). It

- shows the profiles a person's groups allow on the spawn form;
- resolves ``user_options`` through ``labspace.profiles.resolve`` (the only way a
  choice reaches a backend) and refuses bad ones with a 4xx before anything starts;
- hands the resolved ``WorkspaceSpec`` to the backend's ``apply_workspace_spec``;
- queues starts beyond ``spawn_concurrency`` with a "waiting for a slot" message;
- reports progress ("Preparing home", "Starting JupyterLab", ...) to the spawn page;
- runs the hook points below.

Hook points (later features plug in here; each is a list of callables,
``async`` or not, called in order, and may raise ``tornado.web.HTTPError`` to
refuse with that status and message):

- ``before_start(spawner, spec)``: after the profile is resolved, before the
  backend starts anything (budget check, data grants);
- ``after_stop(spawner)``: after the workspace has stopped (usage close);
- ``check_options(spawner, user_options)``: after the profile is resolved, before
  anything starts (app and project choices); a refusal here is the API's answer;
- ``form_parts(spawner)``: returns HTML to add to the spawn form, or
  ``{"html": ..., "labels": {profile slug: text}}`` (prices next to profiles).
- ``start_outcome(spawner, outcome)``: once per start asked for, with a
  ``StartOutcome`` (started, refused or failed; why; how long): the hub's
  metrics and the operations page's record of refused and failed starts. A
  failing hook is logged and never changes the start.

Warm starts (``backend.warm_pool``, ``labspace.warm.pool``): inside the start
slot, after the ``before_start`` hooks and ``prepare_workspace``, a start whose
profile is pooled takes a ready member of the hub's pool for the backend's
``warm_key(spec)`` and hands it this start's identity with
``start_warm(member)``; with no member (or a key of None: a spec the backend
cannot start warm) it is the backend's own cold ``start()``. Hooks, refusals,
progress messages and the state left behind are the same either way.

Services name the extra ``user_options`` keys they handle in ``option_keys``;
any other key is still refused. Hooks may add environment variables through
``spawner.extra_env`` (cleared at each start) and set ``default_url``; a
``before_start`` hook may replace ``spawner.workspace_spec`` (e.g. with a
person's data mounts and files), which the backend then applies; each start
begins again from the profile's spec.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.utils import maybe_future, wait_for_http_server
from tornado import web
from traitlets import (
    Callable,
    Dict,
    Integer,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    validate,
)
from traitlets.config import Configurable
from traitlets.utils.importstring import import_item

from labspace import profiles
from labspace.profiles import ProfileError, WorkspaceSpec
from labspace.state import user_dir_name
from labspace.warm.pool import Member, hub_pool

from .outcome import StartOutcome, outcome_of

# where a hub keeps its StartQueue: its tornado settings (see hub_start_queue)
START_QUEUE = "labspace_start_queue"
FAST_POLL_S = 5.0  # how long a start's port is polled at a short interval
FAST_POLL_INTERVAL = 0.03


class StartProgress:
    """The progress events of one start, for any number of readers.

    Readers are woken as soon as an event arrives, so none is lost when
    JupyterHub ends the event stream right after ``start()`` returns.
    """

    def __init__(self):
        self.events: list[dict[str, Any]] = []
        self.started = False
        self.up = False  # the workspace answered: the start succeeded
        self.done = False
        self._changed = asyncio.Event()

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._poke()

    def finish(self) -> None:
        self.done = True
        self._poke()

    def _poke(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self):
        seen = 0
        while True:
            changed = self._changed
            while seen < len(self.events):
                yield self.events[seen]
                seen += 1
            if self.done:
                return
            await changed.wait()


def default_concurrency() -> int:
    """Two starts per CPU core, at least two: more only makes every start slower."""
    return max(2, 2 * (os.cpu_count() or 1))


class StartQueue:
    """The starts of one hub: how many are asked for and not yet over (how long
    a new one may wait), and the slots they start in."""

    def __init__(self):
        self.pending = 0
        self._slots: dict[int, asyncio.Semaphore] = {}

    def join(self) -> int:
        """Count a start in; returns how many were ahead of it."""
        ahead = self.pending
        self.pending += 1
        return ahead

    def leave(self) -> None:
        self.pending = max(0, self.pending - 1)

    def slot(self, limit: int) -> asyncio.Semaphore:
        """The semaphore for ``limit`` concurrent starts."""
        if limit not in self._slots:
            self._slots[limit] = asyncio.Semaphore(limit)
        return self._slots[limit]


def hub_start_queue(hub_settings: dict[str, Any]) -> StartQueue:
    """The StartQueue of the hub whose tornado settings are ``hub_settings``
    (``JupyterHub.tornado_settings``, which a spawner reaches as
    ``spawner.user.settings``): one per hub application, made at its first start."""
    queue = hub_settings.get(START_QUEUE)
    if queue is None:
        queue = hub_settings[START_QUEUE] = StartQueue()
    return queue


def queue_allowance(ahead: int, limit: int, per_round: float) -> float:
    """Extra seconds a start may take when ``ahead`` starts wait before it: one
    round of ``per_round`` seconds for each full set of ``limit`` slots ahead."""
    return (ahead // limit) * per_round


def _asked_profile(user_options: Any) -> str:
    """The profile a refused ``user_options`` named, as text (never trusted)."""
    asked = user_options.get("profile") if isinstance(user_options, dict) else None
    return asked[:64] if isinstance(asked, str) else ""


class LabspaceSpawnerMixin(Configurable):
    """Profiles, spec, progress, concurrency and hooks for every backend."""

    profiles = List(
        help="Workspace profiles, as `profiles:` in labspace.yaml (Labspace sets it).",
    ).tag(config=True)

    backend_settings = Dict(
        help="The `backend:` section of labspace.yaml (Labspace sets it).",
    ).tag(config=True)

    home_root = Unicode(
        help="""
        Folder on the host that holds each user's home, as
        ``<home_root>/<safe name>`` (local backend; docker with
        ``backend.docker.home: bind``). The name is the user name when it is
        already safe as a folder name, else a slug plus a hash of the name, so two
        users never share a home. Labspace sets it to ``<data_dir>/users``.
        """,
    ).tag(config=True)

    @default("home_root")
    def _default_home_root(self):
        return str(Path.cwd() / "users")

    @validate("home_root")
    def _validate_home_root(self, proposal):
        if not os.path.isabs(proposal.value):
            raise TraitError(
                f"{type(self).__name__}.home_root must be an absolute path, not {proposal.value!r}"
            )
        return proposal.value

    @property
    def home_dir(self) -> str:
        """This user's home folder on the host (all their servers share it)."""
        return os.path.join(self.home_root, user_dir_name(self.user.name))

    spawn_concurrency = Integer(
        0,
        help="""
        How many workspaces may be starting at once, hub-wide; the rest wait for a
        slot and say so on the spawn page. 0: two per CPU core, at least two.
        """,
    ).tag(config=True)

    @property
    def start_slots(self) -> int:
        """How many workspaces may be starting at once (``spawn_concurrency``)."""
        return self.spawn_concurrency or default_concurrency()

    @property
    def start_queue(self) -> StartQueue:
        """The starts of this spawner's hub (every spawner of one hub shares it)."""
        return hub_start_queue(self.user.settings)

    before_start = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(spawner, spec)` run before the backend starts a workspace.",
    ).tag(config=True)

    after_stop = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(spawner)` run after a workspace has stopped.",
    ).tag(config=True)

    check_options = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(spawner, user_options)` run after the profile is resolved, before "
        "anything starts; they refuse a choice by raising tornado.web.HTTPError.",
    ).tag(config=True)

    form_parts = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(spawner)` returning HTML for the spawn form, or "
        '`{"html": str, "labels": {profile: text}}`.',
    ).tag(config=True)

    start_outcome = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(spawner, outcome)` told how each start ended (a StartOutcome).",
    ).tag(config=True)

    option_keys = Dict(
        Unicode(),
        help="Extra `user_options` keys that hooks handle, `{key: what it means}`.",
    ).tag(config=True)

    warm_pool = Dict(
        help="The `backend.warm_pool` section of labspace.yaml (Labspace sets it).",
    ).tag(config=True)

    pool_events = List(
        Union([Callable(), Unicode()]),
        help="Hooks `(event)` told of each warm pool member made, claimed or gone "
        "(labspace.warm.pool.WarmPool); the hub passes them to its pool.",
    ).tag(config=True)

    @validate(
        "before_start", "after_stop", "check_options", "form_parts", "start_outcome", "pool_events"
    )
    def _import_hooks(self, proposal):
        """Hooks may be given as ``"package.module.function"`` (from labspace.yaml)."""
        hooks = []
        for hook in proposal.value:
            if isinstance(hook, str):
                try:
                    hook = import_item(hook)
                except (ImportError, AttributeError, ValueError) as e:
                    raise TraitError(
                        f"{proposal.trait.name} hook {hook!r} cannot be imported: {e}"
                    ) from None
            hooks.append(hook)
        return hooks

    workspace_spec: WorkspaceSpec | None = None  # of this start, hooks' changes included
    _profile_spec: WorkspaceSpec | None = None  # what the profile gave, before any hook
    extra_env: dict[str, str]  # set by hooks for the coming start (see __init__)
    _configured_default_url: str | None = None
    _base_environment: dict[str, str] | None = None  # Spawner.environment as configured
    _hooks_started = False  # before_start ran; after_stop is owed (kept in the state)
    _progress: StartProgress | None = None  # of the coming or the last start

    @default("options_form")
    def _default_options_form(self):
        return self._profile_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return profiles.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._apply_profile

    # -- profiles ------------------------------------------------------------

    def user_groups(self) -> set[str]:
        return {g.name for g in self.user.groups}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_env = {}

    async def _profile_form(self, spawner) -> str:
        mine = profiles.visible_profiles(self.profiles, self.backend_settings, self.user_groups())
        labels: dict[str, str] = {}
        extra = []
        for hook in self.form_parts:
            try:
                part = await maybe_future(hook(self))
            except Exception:  # a broken service must not take the spawn page down
                self.log.exception("Spawn form hook %r failed for %s", hook, self._log_name)
                continue
            if isinstance(part, dict):
                labels.update(part.get("labels") or {})
                part = part.get("html") or ""
            if part:
                extra.append(part)
        if len(mine) <= 1 and not extra:
            return ""  # nothing to choose: start straight away
        return profiles.options_form(mine, self.backend_settings, labels, "\n".join(extra))

    def resolve_spec(self, user_options: Any) -> WorkspaceSpec:
        """The spec for ``user_options``, or an HTTP 4xx naming what is wrong."""
        try:
            return profiles.resolve(
                self.profiles,
                self.backend_settings,
                self.user_groups(),
                user_options,
                frozenset(self.option_keys),
            )
        except ProfileError as e:
            self.log.warning("Refused options for %s: %s", self._log_name, e.message)
            raise web.HTTPError(e.status, e.message) from None

    async def _apply_profile(self, spawner, user_options) -> None:
        try:
            spec = self.resolve_spec(user_options)
        except web.HTTPError as e:
            # JupyterHub saved these options before asking us; forget them, or
            # every later start that names no profile replays the refused choice
            self.orm_spawner.user_options = {}
            await self.tell_outcome(outcome_of(e, _asked_profile(user_options), 0.0))
            raise
        self.workspace_spec = self._profile_spec = spec
        self.apply_workspace_spec(spec)
        if self._configured_default_url is None:
            self._configured_default_url = self.default_url
        self.default_url = self._configured_default_url
        self.extra_env = {}
        try:
            for hook in self.check_options:
                await maybe_future(hook(self, user_options))
        except web.HTTPError as e:
            self.log.warning("Refused options for %s: %s", self._log_name, e.log_message)
            self.orm_spawner.user_options = {}
            await self.tell_outcome(outcome_of(e, spec.profile, 0.0))
            raise
        self.log.info("%s gets profile %s", self._log_name, spec.profile)
        self._show_profile(spec.profile)
        self._allow_for_queue()

    _configured_start_timeout: int | None = None
    _queued = False

    def _allow_for_queue(self) -> None:
        """JupyterHub reads ``start_timeout`` as the start begins: add time for the
        starts ahead in the queue, so a burst waits instead of timing out."""
        if self._configured_start_timeout is None:
            self._configured_start_timeout = self.start_timeout
        if not self._queued:
            ahead = self.start_queue.join()
            self._queued = True
            limit = self.start_slots
            extra = queue_allowance(ahead, limit, self.http_timeout)
            self.start_timeout = int(self._configured_start_timeout + extra)
            if extra:
                self.log.info(
                    "%s: %d starts ahead; start_timeout %ss",
                    self._log_name,
                    ahead,
                    self.start_timeout,
                )

    def _leave_queue(self) -> None:
        if self._queued:
            self._queued = False
            self.start_queue.leave()

    runs_images = False  # docker and kubernetes: only allowed images may run

    def apply_workspace_spec(self, spec: WorkspaceSpec) -> None:
        """Turn ``spec`` into this backend's traits; backends extend it."""
        if self.runs_images:
            try:
                self.image = profiles.check_image(spec, self.profiles, self.backend_settings)
            except ProfileError as e:
                self.log.error("Refused image %r for %s", spec.image, self._log_name)
                raise web.HTTPError(e.status, e.message) from None
        self.cpu_limit = spec.cpu_limit
        self.cpu_guarantee = spec.cpu_guarantee
        self.mem_limit = spec.mem_limit
        self.mem_guarantee = spec.mem_guarantee
        # the spawner object lives on across starts: build from the configured
        # environment each time, so one profile's variables never reach the next
        if self._base_environment is None:
            self._base_environment = dict(self.environment)
        self.environment = {**self._base_environment, **spec.env, "LABSPACE_PROFILE": spec.profile}

    def get_env(self):
        """The backend's environment plus the hooks' ``extra_env``, added last and
        as it is: data such as JSON, never a template (KubeSpawner expands
        ``{...}`` in the configured ``environment``, which would break JSON)."""
        env = super().get_env()
        warm = self.warm_pool or {}
        if warm.get("enabled") and warm.get("kernel", True):
            # cold and warm starts alike (extensions/kernels.py)
            env["LABSPACE_PRESTART_KERNEL"] = "1"
        env.update(self.extra_env)
        return env

    # -- progress ------------------------------------------------------------

    def emit(self, message: str, progress: int) -> None:
        """A progress event for the spawn page."""
        self.log.debug("%s: %s", self._log_name, message)
        self._start_progress().emit({"progress": progress, "message": message})

    def _start_progress(self) -> StartProgress:
        """The coming start's progress, or the running or last one's."""
        if self._progress is None:
            self._progress = StartProgress()
        return self._progress

    async def progress(self):
        # asked for before start() has begun (JupyterHub marks a spawn pending
        # first): wait for that start's events, not the last one's
        async for event in self._start_progress().follow():
            yield event

    @property
    def start_failed(self) -> bool:
        """The last start in this hub process ended without the workspace up."""
        p = self._progress
        return p is not None and p.started and p.done and not p.up

    _shown_profile: str | None = None

    def _show_profile(self, slug: str) -> None:
        """The resolved profile in ``user_options``, so the hub API's server model
        names it (the idle culler's per-profile timeout reads it there); the
        options JupyterHub saved for the next start stay as they were asked."""
        self._shown_profile = slug
        self.user_options = {**(self.user_options or {}), "profile": slug}

    def get_state(self):
        state = super().get_state()
        if self._hooks_started:
            state["labspace_hooks_started"] = True
        if self._shown_profile:  # shown again after a hub restart (load_state)
            state["labspace_profile"] = self._shown_profile
        return state

    def load_state(self, state):
        super().load_state(state)
        self._hooks_started = bool(state.get("labspace_hooks_started"))
        if state.get("labspace_profile") and "profile" not in (self.user_options or {}):
            self._show_profile(state["labspace_profile"])

    def clear_state(self):
        """JupyterHub calls this as a spawn begins and after a stop: the last
        start's events are over (an unstarted one keeps its readers)."""
        super().clear_state()
        # _hooks_started survives: backends clear their state when the process
        # ends (LocalProcessSpawner.poll), before run_post_stop_hook reads it
        if self._progress is not None and self._progress.started:
            self._progress = None

    # -- start and stop ------------------------------------------------------

    async def start(self):
        progress = self._start_progress()
        if progress.started:  # started again without clear_state()
            self._progress = progress = StartProgress()
        progress.started = True
        began, error = time.monotonic(), None
        try:
            return await self._start_in_slot()
        except BaseException as e:
            error = e
            raise
        finally:
            self._leave_queue()
            progress.finish()
            if not isinstance(error, asyncio.CancelledError):
                profile = self._profile_spec.profile if self._profile_spec else ""
                await self.tell_outcome(outcome_of(error, profile, time.monotonic() - began))

    async def tell_outcome(self, outcome: StartOutcome) -> None:
        """Run the ``start_outcome`` hooks; one that fails is logged and skipped."""
        for hook in self.start_outcome:
            try:
                await maybe_future(hook(self, outcome))
            except Exception:  # noqa: BLE001 - a record is never worth a start
                self.log.exception("Start outcome hook %r failed for %s", hook, self._log_name)

    async def _start_in_slot(self):
        if self._profile_spec is None:  # e.g. resumed after a hub restart
            self._profile_spec = self.workspace_spec or self.resolve_spec(self.user_options or {})
            self.workspace_spec = None
        spec = self._profile_spec
        if self.workspace_spec is not spec:  # what a hook of the last start added is gone
            self.workspace_spec = spec
            self.apply_workspace_spec(spec)
        limit = self.start_slots
        gate = self.start_queue.slot(limit)
        if gate.locked():
            starting = "1 workspace is" if limit == 1 else f"{limit} workspaces are"
            self.emit(f"Waiting for a slot: {starting} starting", 5)
        waited = time.monotonic()
        async with gate:
            self.log.debug(
                "%s got a start slot after %.1fs", self._log_name, time.monotonic() - waited
            )
            self._hooks_started = True
            await self._run_before_start(spec)
            spec = self.workspace_spec
            self.emit("Preparing home", 15)
            await maybe_future(self.prepare_workspace())
            self.emit(f"Starting your {spec.display_name} workspace", 30)
            url = await self._start_warm_or_cold(spec)
            self.emit("Starting JupyterLab", 60)
            await self._wait_up(url)
        self._start_progress().up = True
        self.emit("Workspace is up", 95)
        return url

    # -- warm starts ---------------------------------------------------------

    started_warm = False  # the last start claimed a pool member (this hub process)

    def warm_key(self, spec: WorkspaceSpec) -> str | None:
        """The pool this spec can start warm from; None: it always starts cold.
        Backends with a warm pool override it."""
        return None

    async def start_warm(self, member: Member):
        """Hand ``member`` this start's identity (token, environment, home,
        mounts, limits); return what the backend's ``start()`` returns and leave
        the spawner in the state a cold start would. Backends with a pool
        implement it."""
        raise NotImplementedError

    def _pooled(self, spec: WorkspaceSpec) -> bool:
        """The settings let ``spec``'s profile start warm."""
        warm = self.warm_pool or {}
        if not warm.get("enabled"):
            return False
        only = warm.get("profiles") or []
        return not only or spec.profile in only

    async def _start_warm_or_cold(self, spec: WorkspaceSpec):
        """A warm start from the hub's pool when it has a member for this spec,
        else the backend's cold start. A claim that fails is not retried warm:
        the member is destroyed and the start goes on cold."""
        self.started_warm = False
        pool = hub_pool(self.user.settings) if self._pooled(spec) else None
        member = pool.take(self.warm_key(spec)) if pool is not None else None
        if member is None:
            return await super().start()
        began = time.monotonic()
        try:
            url = await self.start_warm(member)
        except web.HTTPError:
            pool.give_back_failed(member)
            raise
        except Exception:
            self.log.exception(
                "%s: warm start from member %s failed; starting cold", self._log_name, member.id
            )
            pool.give_back_failed(member)
            return await super().start()
        self.started_warm = True
        pool.claimed(member, user=self.user.name, server=self.name, profile=spec.profile)
        self.log.info(
            "%s started warm from member %s in %.2fs",
            self._log_name,
            member.id,
            time.monotonic() - began,
        )
        return url

    async def _run_before_start(self, spec: WorkspaceSpec) -> None:
        """The ``before_start`` hooks, in order. A hook may replace
        ``workspace_spec`` (e.g. with the mounts of a person's data grants): the
        backend then applies the spec it left."""
        for hook in self.before_start:
            await maybe_future(hook(self, self.workspace_spec or spec))
        if self.workspace_spec is not spec:
            self.log.info("%s: a start hook changed the workspace spec", self._log_name)
            self.apply_workspace_spec(self.workspace_spec)

    @property
    def files_dir(self) -> str:
        """Where the workspace finds the spec's ``files`` (see
        ``labspace.profiles.WorkspaceFile``); backends say where they put them."""
        return profiles.FILES_DIR

    def prepare_workspace(self) -> None:
        """Backend work before the workspace starts (home, volumes, images);
        runs inside the start slot. May be async."""

    async def _wait_up(self, url) -> None:
        """Hold the slot until the workspace answers HTTP, so a burst of starts
        shares the CPU in turns instead of all timing out together."""
        if not isinstance(url, str):
            ip, port = url
            url = f"http://{ip}:{port}"
        began = time.monotonic()
        await self._wait_listening(url, min(FAST_POLL_S, self.http_timeout))
        try:
            left = max(1.0, self.http_timeout - (time.monotonic() - began))
            await wait_for_http_server(url + self.server.base_url, timeout=left)
        except TimeoutError:
            self.log.warning("%s did not answer within %ss", self._log_name, self.http_timeout)

    async def _wait_listening(self, url: str, bound: float) -> None:
        """Until something listens at ``url``'s port, asked every
        ``FAST_POLL_INTERVAL`` for at most ``bound`` seconds: a warm workspace
        answers a fraction of a second after its claim, and JupyterHub's own
        wait (a back-off from 0.2 s, doubling) would add up to as much again.
        A refused connection costs next to nothing; the HTTP wait follows."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, TimeoutError):
                await asyncio.sleep(FAST_POLL_INTERVAL)
                continue
            writer.close()
            return

    async def run_post_stop_hook(self):
        """After every end of a workspace that began its before_start hooks:
        a stop, a failed start, or a workspace that died on its own (JupyterHub
        runs this from ``User.stop`` in all three cases, even after a hub restart,
        since the flag lives in the spawner's state)."""
        self._leave_queue()  # a start that failed before it began
        try:
            if self._hooks_started:
                for hook in self.after_stop:
                    await maybe_future(hook(self))
        finally:
            self._hooks_started = False
            await maybe_future(super().run_post_stop_hook())
