# Plain JupyterHub for the benchmarks: upstream classes and defaults, no Labspace.
# Everything machine-specific comes from BENCH_* environment variables set by
# bench/spawn.py.
import os
import sys

c = get_config()  # noqa: F821
env = os.environ

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(env["BENCH_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["BENCH_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['BENCH_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [env["BENCH_PROXY"]]
c.JupyterHub.db_url = f"sqlite:///{env['BENCH_DIR']}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{env['BENCH_DIR']}/cookie_secret"
c.JupyterHub.pid_file = f"{env['BENCH_DIR']}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = f"{env['BENCH_DIR']}/proxy.pid"

c.Spawner.default_url = "/lab"
if env.get("BENCH_BACKEND", "local") == "local":
    # upstream's local spawner that needs no system users (the closest to labspace-local)
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = env["BENCH_DIR"] + "/users/{username}"
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    if os.geteuid() == 0:
        c.Spawner.args = ["--ServerApp.allow_root=True"]
else:
    # upstream DockerSpawner, on the host network (bench/plain_docker.py)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    c.JupyterHub.spawner_class = "plain_docker.HostNetworkDockerSpawner"
    c.DockerSpawner.image = env["BENCH_IMAGE"]
    c.DockerSpawner.network_name = "host"
    c.DockerSpawner.use_internal_ip = True  # no port publishing on the host network
    c.DockerSpawner.remove = True
    c.DockerSpawner.prefix = "bench-plain"
    c.Spawner.ip = "127.0.0.1"

if env.get("BENCH_PASSWORD"):
    # anyone signs in with this password (the browser benchmark logs in)
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = env["BENCH_PASSWORD"]
else:
    c.JupyterHub.authenticator_class = "null"
c.JupyterHub.services = [{"name": "bench", "api_token": env["BENCH_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "bench-role",
        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:metrics"],
        "services": ["bench"],
    }
]
