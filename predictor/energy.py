"""The edge's energy for a cut, modelled from a power table (nothing here can measure power).

energy = compute power x edge time + radio power while sending x send time
         + (idle power + radio power while waiting) x (RTT + cloud time)

in mJ (mW x ms / 1000). The shipped table, predictor/power/default.json, writes the source of
every figure beside it; `--power-profile FILE.json` (same layout, any subset of the entries)
overrides it for a device someone has measured.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POWER_PROFILE = Path(__file__).resolve().parent / "power" / "default.json"
OBJECTIVES = ("latency", "energy")
_DEVICE_KEYS = ("compute_mw", "idle_mw")
_NETWORK_KEYS = ("send_mw", "wait_mw")


class PowerProfileError(ValueError):
    """A power profile file that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class EdgePower:
    """The powers (mW) that matter for one request of an edge on one network."""
    network: str
    compute_mw: float
    idle_mw: float
    send_mw: float
    wait_mw: float

    def energy_mj(self, edge_ms: float, send_ms: float, wait_ms: float) -> float:
        return (self.compute_mw * edge_ms + self.send_mw * send_ms
                + (self.idle_mw + self.wait_mw) * wait_ms) / 1000.0

    def weights(self) -> tuple[float, float, float]:
        """mJ per ms of edge compute, of sending, of waiting: the cut search's cost weights."""
        return self.compute_mw / 1000.0, self.send_mw / 1000.0, (self.idle_mw + self.wait_mw) / 1000.0


@dataclass(frozen=True)
class PowerProfile:
    compute_mw: float
    idle_mw: float
    networks: dict[str, dict[str, float]]  # network -> {"send_mw": .., "wait_mw": ..}
    sources: dict[str, str]                  # "compute_mw", "3g.send_mw", ... -> where it comes from

    @classmethod
    def load(cls, path: Path | str | None = None) -> PowerProfile:
        """The shipped table, with the entries of `path` (if given) laid over it."""
        merged = _read(DEFAULT_POWER_PROFILE)
        if path is not None:
            _overlay(merged, _read(Path(path)), str(path))
        return cls._from_document(merged, str(path or DEFAULT_POWER_PROFILE))

    @classmethod
    def _from_document(cls, doc: dict, where: str) -> PowerProfile:
        sources: dict[str, str] = {}

        def number(entry, name: str) -> float:
            value = entry.get("value") if isinstance(entry, dict) else entry
            if isinstance(entry, dict):
                sources[name] = str(entry.get("source", "no source given"))
            else:
                sources[name] = f"{where} (no source given)"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PowerProfileError(f"{where}: {name} must be a power in mW >= 0, got {value!r}")
            return float(value)

        device = {key: number(doc.get(key), key) for key in _DEVICE_KEYS}
        networks = {net: {key: number(entries.get(key), f"{net}.{key}") for key in _NETWORK_KEYS}
                    for net, entries in doc["networks"].items()}
        return cls(device["compute_mw"], device["idle_mw"], networks, sources)

    def for_network(self, network: str) -> EdgePower:
        key = network.strip().lower()
        if key not in self.networks:
            raise PowerProfileError(f"no power figures for network {network!r}; the profile has "
                                    f"{', '.join(sorted(self.networks))}")
        radio = self.networks[key]
        return EdgePower(key, self.compute_mw, self.idle_mw, radio["send_mw"], radio["wait_mw"])


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise PowerProfileError(f"cannot read the power profile {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PowerProfileError(f"{path} is not a JSON power profile: {e}") from None
    if not isinstance(doc, dict):
        raise PowerProfileError(f"{path}: a power profile is a JSON object")
    unknown = set(doc) - {*_DEVICE_KEYS, "networks", "about"}
    if unknown:
        raise PowerProfileError(f"{path}: unknown entries {sorted(unknown)}; expected "
                                f"{', '.join(_DEVICE_KEYS)} and networks")
    networks = doc.get("networks", {})
    if not isinstance(networks, dict) or not all(isinstance(v, dict) for v in networks.values()):
        raise PowerProfileError(f"{path}: networks maps a network name to its send_mw and wait_mw")
    for net, entries in networks.items():
        unknown = set(entries) - set(_NETWORK_KEYS)
        if unknown:
            raise PowerProfileError(f"{path}: network {net!r} has unknown entries {sorted(unknown)}; "
                                    f"expected {', '.join(_NETWORK_KEYS)}")
    return doc


def _overlay(base: dict, override: dict, where: str) -> None:
    for key in _DEVICE_KEYS:
        if key in override:
            base[key] = override[key]
    for net, entries in override.get("networks", {}).items():
        key = net.strip().lower()
        if key not in base["networks"] and set(entries) != set(_NETWORK_KEYS):
            raise PowerProfileError(f"{where}: the new network {net!r} needs both send_mw and wait_mw")
        base["networks"].setdefault(key, {}).update(entries)
