"""The ``labspace`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from . import cli_backup, cli_data, cli_servers, cli_service, reference
from . import settings as settings_mod
from .cli_api import COMMANDS, err, load_settings, out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Labspace: a JupyterHub distribution for research workspaces.

    Start with `labspace up`; the settings live in one file, labspace.yaml.
    """


@main.command()
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file. Default: $LABSPACE_CONFIG, else ./labspace.yaml "
    "(written with defaults if missing).",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=None,
    help="Public port, overriding hub.port.",
)
def up(config, port):
    """Run Labspace in the foreground until Ctrl-C."""
    import signal

    from .launcher import Hub, LaunchError, prepare, run

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # ignored by a wrapper or a script
        signal.signal(signal.SIGINT, signal.default_int_handler)  # SIGINT stops Labspace
    hub = Hub()  # it imports JupyterHub while the settings are checked
    try:
        try:
            prepared = prepare(config, port)
        except LaunchError as e:
            hub.cancel()
            err.print(str(e), markup=False)
            sys.exit(2)
        if prepared.wrote_default:
            out.print(
                f"No settings file found: wrote the defaults to {prepared.wrote_default} "
                "(edit it, then restart).",
                markup=False,
            )
        prepared.hub = hub
        sys.exit(run(prepared, echo=lambda line: out.print(line, markup=False)))
    finally:
        hub.cancel()  # nothing once it has had its go


@main.group()
def config():
    """Check, create and explain labspace.yaml."""


_FILE = click.argument("file", required=False, type=click.Path(dir_okay=False))


@config.command()
@_FILE
def validate(file):
    """Check a settings file; print one line per problem.

    Exits 0 when the file is valid and 1 when it is not.
    """
    loaded = load_settings(file)
    from . import needs

    # the file may be meant for another machine: what this one lacks is a warning
    for warning in [*loaded.warnings, *needs.missing(loaded)]:
        err.print(f"warning: {warning}", markup=False)
    out.print(f"{loaded.source}: valid", markup=False)


@config.command()
@_FILE
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(file, as_json):
    """Print the effective settings, defaults filled in and secrets hidden."""
    loaded = load_settings(file)
    values = loaded.redacted()
    text = json.dumps(values, indent=2) if as_json else yaml.safe_dump(values, sort_keys=False)
    click.echo(text.rstrip())


@config.command()
@click.argument("file", default=settings_mod.DEFAULT_PATH, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(file, force):
    """Write a commented settings file with every default."""
    path = Path(file)
    if path.exists() and not force:
        err.print(f"{path}: exists already (use --force to overwrite)", markup=False)
        sys.exit(1)
    try:
        path.write_text(reference.default_yaml())
    except OSError as e:
        err.print(f"{path}: cannot be written: {e.strerror} (choose a writable path)", markup=False)
        sys.exit(1)
    out.print(f"Wrote {path}", markup=False)


@config.command("helm-values")
@_FILE
def helm_values_cmd(file):
    """Print a settings file as values of the Helm chart (helm/labspace).

    The settings go under `labspace:`; what the chart sets or a cluster does
    otherwise is left out, one line each on stderr. Secrets are left out too.
    """
    from .helm_values import helm_values

    loaded = load_settings(file)  # a file that is not valid stops here
    written = yaml.safe_load(Path(loaded.source).read_text()) or {}
    values, notes = helm_values(written)
    for note in notes:
        err.print(note, markup=False)
    click.echo(f"# from {loaded.source} by `labspace config helm-values`")
    click.echo(yaml.safe_dump(values, sort_keys=False).rstrip())


@config.command("prometheus")
@_FILE
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False))
@click.option("--interval", default="30s", show_default=True, help="Scrape interval.")
def prometheus_cmd(file, config_file, interval):
    """Print a Prometheus scrape config for the hub and every enabled service.

    It reaches them through the public URL and reads the scraper's token from
    its file under data_dir (the hub makes it at its first start); the token
    itself is never printed. See docs/how-to/monitoring.md.
    """
    from . import metrics
    from .state import State

    loaded = load_settings(config_file or file)
    path = metrics.token_file(State(loaded))
    try:
        text = metrics.scrape_config(loaded, path, interval)
    except ValueError as e:
        err.print(f"--interval: {e}", markup=False)
        sys.exit(2)
    if not Path(path).exists():
        err.print(
            f"note: {path} does not exist yet: the hub makes it at its first start", markup=False
        )
    click.echo(f"# from {loaded.source} by `labspace config prometheus`")
    click.echo(text.rstrip())


@config.command("reference")
def reference_cmd():
    """Print the settings reference as Markdown (docs/reference/settings.md)."""
    click.echo(reference.markdown(), nl=False)


@main.command()
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file of the Labspace to ask. Default: $LABSPACE_CONFIG, else ./labspace.yaml.",
)
@click.option(
    "--url",
    envvar="LABSPACE_URL",
    default=None,
    help="Where the hub runs (default: its local address from the settings).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def version(config, url, as_json):
    """Print what is installed, what runs, and each database's revision.

    Asks the hub at URL (JupyterHub's version; Labspace's too with LABSPACE_TOKEN
    set to a token that may read:hub) and reads each database's migration
    revision against the newest one the installed code knows (a database behind
    it migrates at the next start).
    """
    import os

    from . import versions

    settings = version_settings(config)
    services = [n for n in versions.SERVICES if settings.get(f"{n}.enabled")]
    report = {
        "installed": versions.installed(proxy_version(settings)),
        "running": versions.running(
            url or settings.local_url(), os.environ.get("LABSPACE_TOKEN", ""), services
        ),
        "databases": versions.databases(settings),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in versions.lines(report):
        out.print(line, markup=False)


def version_settings(config: str | None) -> settings_mod.Settings:
    """The settings ``labspace version`` asks about: ``--config``, else
    $LABSPACE_CONFIG, else ./labspace.yaml (a file that is not valid is an error),
    else the defaults."""
    import os

    named = config or os.environ.get(settings_mod.CONFIG_ENV)
    if not named and not settings_mod.config_path().exists():
        return settings_mod.Settings(values=settings_mod.with_defaults({}))
    return load_settings(config)


def proxy_version(settings: settings_mod.Settings) -> str:
    """The version of the proxy Labspace would run with ``settings``."""
    import subprocess

    from .hubconfig import ProxyNotFound, find_proxy

    try:
        cmd = find_proxy(settings)
        done = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=20)
    except (ProxyNotFound, OSError, subprocess.TimeoutExpired):
        return "(not found)"
    return done.stdout.strip() or "(unknown)"


for command in (
    *COMMANDS,
    *cli_data.COMMANDS,
    *cli_servers.COMMANDS,
    *cli_backup.COMMANDS,
    *cli_service.COMMANDS,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
