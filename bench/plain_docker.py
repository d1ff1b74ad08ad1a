"""Upstream DockerSpawner with the one addition host networking needs: each
server on its own free loopback port (upstream assumes one port, 8888, per
container IP). Used by bench/plain_jupyterhub_config.py for the docker backend."""

from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port


class HostNetworkDockerSpawner(DockerSpawner):
    def get_args(self):
        return [f"--ip={self.ip}", f"--port={self.port}", *super().get_args()]

    async def start(self):
        self.port = random_port()
        return await super().start()

    async def get_ip_and_port(self):
        return self.ip, self.port
