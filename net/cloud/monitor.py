"""The standalone bandwidth monitor server: answers probes on its own port (main port + 1).

The cloud answers probes on its main port too, so an edge measures the path its tensors take;
this server is for the multi-task mode and for tools.
"""
from __future__ import annotations

from net.cloud.server import DEFAULT_HOST, DEFAULT_PORT
from net.server.framework import FrameServer, serve_probes
from net.wire.protocol import PROTOCOL_VERSION


def monitor_port_for(port: int) -> int:
    """The monitor's port beside a cloud on `port`: the next one (0 stays 0: any free port)."""
    return port + 1 if port else 0


DEFAULT_MONITOR_PORT = monitor_port_for(DEFAULT_PORT)


class MonitorServer(FrameServer):
    role = "bandwidth monitor"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_MONITOR_PORT, **kwargs):
        super().__init__(host, port, **kwargs)
        self.handlers["hello"] = lambda header, tensors: (
            {"type": "hello", "version": PROTOCOL_VERSION, "models": []}, None)
        serve_probes(self)
