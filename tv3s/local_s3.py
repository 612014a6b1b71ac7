"""A real S3-compatible server (moto's) on 127.0.0.1, started and stopped by PID.

For the tests and the demo: moto is a development dependency (`pip install tv3s[dev]`), its
data lives in memory, and the server listens on loopback only. Never a production store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "tv3s-local-key"
SECRET_KEY = "tv3s-local-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    pid: int

    @property
    def storage_options(self) -> dict:
        """fsspec / s3fs options for this server (no region: bucket creation breaks with one)."""
        return {"key": ACCESS_KEY, "secret": SECRET_KEY, "client_kwargs": {"endpoint_url": self.endpoint_url}}

    @property
    def env(self) -> dict[str, str]:
        """The same, as the environment variables botocore reads (the usual place for credentials)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)

    def make_bucket(self, name: str) -> str:
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port; stop exactly that process afterwards."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is missing: install the development extra (pip install 'tv3s[dev]')")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except Exception as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {url}") from exc
                time.sleep(0.1)
        yield S3Server(url, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
