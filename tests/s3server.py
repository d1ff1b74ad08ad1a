"""A real S3 API for tests: moto's server mode on a free loopback port, with
IAM enforced, one bucket and three IAM users.

    with S3Server(tmp_path, bucket="labspace-test", prefix="genomes/") as s3:
        s3.endpoint          # http://127.0.0.1:<port>
        s3.read, s3.write    # {"access_key_id", "secret_access_key"}
        s3.put("genomes/a.csv", b"x,y\\n1,2\\n")

- ``read``: s3:ListBucket (and HeadBucket, GetBucketLocation) on the bucket,
  s3:GetObject on ``bucket/prefix*``;
- ``write``: the same plus s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload
  on ``bucket/prefix*``;
- ``admin``: s3:* everywhere (to seed objects anywhere).

moto authorises nothing by default. Its ``/moto-api/reset-auth`` sets how many
more requests go unchecked: the set-up runs unchecked, then it is set to 0, so
from then on every request must be signed with one of these key pairs and is
held to its user's policy (a write with the read key is AccessDenied, 403).
The server runs in a session of its own, is waited for with a bound and is
stopped by PID (SIGTERM, then SIGKILL of its group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from harness import free_port

READ_ACTIONS = ["s3:GetObject"]
WRITE_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
BUCKET_ACTIONS = ["s3:ListBucket", "s3:HeadBucket", "s3:GetBucketLocation"]
ADMIN_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


def policy(bucket: str, prefix: str, object_actions: list[str]) -> str:
    """An IAM policy: list the bucket, ``object_actions`` on ``bucket/prefix*``."""
    statements = [
        {"Effect": "Allow", "Action": BUCKET_ACTIONS, "Resource": f"arn:aws:s3:::{bucket}"},
        {
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class S3Server:
    """moto's S3 (and IAM) on 127.0.0.1, IAM enforced once ``start`` returns."""

    def __init__(self, workdir: Path, bucket: str = "labspace-test", prefix: str = "data/"):
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.prefix = prefix
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"moto-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.read: dict[str, str] = {}
        self.write: dict[str, str] = {}
        self.admin: dict[str, str] = {}

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> S3Server:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)  # unchecked until set-up is done
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait(timeout)
            self._set_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"moto server exited with {self.proc.returncode}:\n{log}")
            try:
                if httpx.get(f"{self.endpoint}/moto-api/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"moto server on {self.endpoint} not up after {timeout} s")

    def _set_up(self) -> None:
        setup = {"access_key_id": "setup", "secret_access_key": "setup"}
        self.client(setup).create_bucket(Bucket=self.bucket)
        iam = self._boto("iam", setup)
        for name, actions in (("read", READ_ACTIONS), ("write", WRITE_ACTIONS), ("admin", None)):
            user = f"labspace-{name}"
            iam.create_user(UserName=user)
            document = policy(self.bucket, self.prefix, actions) if actions else ADMIN_POLICY
            iam.put_user_policy(UserName=user, PolicyName="data", PolicyDocument=document)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            pair = {"access_key_id": key["AccessKeyId"]}
            setattr(self, name, {**pair, "secret_access_key": key["SecretAccessKey"]})
        r = httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0", timeout=10)
        r.raise_for_status()  # from now on every request is authenticated and authorised

    def _boto(self, service: str, pair: dict[str, str]):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=pair["access_key_id"],
            aws_secret_access_key=pair["secret_access_key"],
        )

    def client(self, pair: dict[str, str]):
        """A boto3 S3 client signing with ``pair``."""
        return self._boto("s3", pair)

    def put(self, key: str, data: bytes) -> None:
        """Store an object (with the admin key: anywhere in the bucket)."""
        self.client(self.admin).put_object(Bucket=self.bucket, Key=key, Body=data)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
