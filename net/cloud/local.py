"""A cloud in a child process on free loopback ports, for one run (--local-cloud, benchmarks).

A process of its own, as a real cloud: its own torch threads (all cores unless told) and memory.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from models import IMAGENET
from net.edge.client import CloudUnavailable
from net.wire import auth
from utils.provenance import REPO_ROOT

READY_PREFIX = "ready "  # the cloud's machine-readable line once it serves (net.apps.cloud --ready-line)


# Preloading VGG16-BN (build, fingerprint, shape pass) takes seconds; more on a busy machine.
START_TIMEOUT_S = 180.0


class LocalCloud:
    """`.address` (and `.monitor_address` with the monitor), `.threads`, `.process`."""

    def __init__(self, preload: list[str], weights: dict[str, Path | str] | None = None, device: str = "cpu",
                 with_monitor: bool = False, token: bytes | None = None, threads: int | None = None):
        module = "net.apps.tasks_cloud" if with_monitor else "net.apps.cloud"
        cmd = [sys.executable, "-m", module, "-i", "127.0.0.1", "-p", "0", "-d", device, "--ready-line"]
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
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
                                        cwd=REPO_ROOT)
        ready = self._wait_until_ready()
        self.address, self.threads = (ready["address"][0], int(ready["address"][1])), int(ready["threads"])
        self.monitor_address = tuple(ready["monitor"]) if ready["monitor"] else None

    @property
    def port(self) -> int:
        return self.address[1]

    def _wait_until_ready(self) -> dict:
        """The cloud's ready line, read within START_TIMEOUT_S. A thread reads the child's stdout
        line by line (and keeps draining it afterwards, so a chatty child never blocks on a full
        pipe); a select() on the pipe would miss lines already in the reader's buffer."""
        lines: queue.Queue[str] = queue.Queue()

        stdout = self.process.stdout
        assert stdout is not None  # Popen(stdout=PIPE)

        def pump() -> None:
            for text in stdout:
                lines.put(text)
            lines.put("")  # end of file: the child exited

        threading.Thread(target=pump, name="local-cloud-stdout", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line.startswith(READY_PREFIX):
                return json.loads(line[len(READY_PREFIX):])
            if not line:  # the child exited, or the deadline passed
                break
        self.process.kill()
        self.process.wait()
        self._stderr.seek(0)
        why = self._stderr.read()[-2000:] or line or f"no ready line within {START_TIMEOUT_S:g} s"
        self.close()
        raise CloudUnavailable(f"the local cloud did not start: {why}".strip())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def __enter__(self) -> LocalCloud:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
