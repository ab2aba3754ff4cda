"""A cloud in a child process on free loopback ports, for one run (--local-cloud, benchmarks).

A process of its own, as a real cloud: its own torch threads (all cores unless told) and memory.
"""
from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import tempfile
from pathlib import Path

from models import IMAGENET
from net import auth
from net.edge_client import CloudUnavailable
from utils.provenance import REPO_ROOT

_SERVING = re.compile(r"cloud serving on ([\d.]+):(\d+) \(\w+, (\d+) thread")
_MONITOR = re.compile(r"bandwidth monitor on ([\d.]+):(\d+)")


# Preloading VGG16-BN (build, fingerprint, shape pass) takes seconds; more on a busy machine.
START_TIMEOUT_S = 180.0


class LocalCloud:
    """`.address` (and `.monitor_address` with the monitor), `.threads`, `.process`."""

    def __init__(self, preload: list[str], weights: dict[str, Path | str] | None = None, device: str = "cpu",
                 with_monitor: bool = False, token: bytes | None = None, threads: int | None = None):
        script = "tasks_cloud_api.py" if with_monitor else "cloud_api.py"
        cmd = [sys.executable, str(REPO_ROOT / script), "-i", "127.0.0.1", "-p", "0", "-d", device]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        if preload:
            cmd += ["--preload", *preload]
        for name, spec in (weights or {}).items():  # a file, or "imagenet" (torchvision's, from torch's cache)
            cmd += ["--weights", f"{name}={spec if spec == IMAGENET else Path(spec).resolve()}"]
        env = {k: v for k, v in os.environ.items() if k != auth.TOKEN_ENV}
        if token is not None:  # by environment, not argv: other users can read a process's argv
            env[auth.TOKEN_ENV] = token.decode("utf-8")
        # stderr to a file, not a pipe nobody reads during the run: a chatty cloud would fill the
        # pipe and block
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        serving = self._wait_for(_SERVING)
        self.address, self.threads = (serving.group(1), int(serving.group(2))), int(serving.group(3))
        monitor = self._wait_for(_MONITOR) if with_monitor else None
        self.monitor_address = (monitor.group(1), int(monitor.group(2))) if monitor else None

    @property
    def port(self) -> int:
        return self.address[1]

    def _wait_for(self, pattern: re.Pattern) -> re.Match:
        # the child prints each address once it listens
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        match = pattern.match(line)
        if not match:
            self.process.kill()
            self.process.wait()
            self._stderr.seek(0)
            why = line or self._stderr.read()[-2000:]
            self.close()
            raise CloudUnavailable(f"the local cloud did not start: {why}".strip())
        return match

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "LocalCloud":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
