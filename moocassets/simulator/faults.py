"""Fault injection for the simulator: latency, rate limits, errors, timeouts, broken bodies.

All faults are off by default. Random decisions come from one ``random.Random(seed)``, so a given
sequence of requests meets the same faults on every run. The rate limit is a token bucket per
source system ("mooc" / "h5p") on the wall clock.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .world import VARIANTS

MOOC_ROUTES = ("M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M12", "CSRF", "LOGIN")
H5P_ROUTES = ("H1", "H2", "H3", "H4", "H5")
EXPORT_ROUTES = frozenset({"M4", "M5", "M6", "M7", "M8"})
ERROR_STATUSES = (500, 502, 503)


def system_of(route_id: str) -> str:
    return "h5p" if route_id.startswith("H") else "mooc"


@dataclass(frozen=True)
class FaultConfig:
    """What to inject. Rates are probabilities per request in [0, 1]."""

    seed: int = 0
    latency_ms: float = 0.0  # fixed delay on every API response
    jitter_ms: float = 0.0  # + uniform [0, jitter_ms]
    rate_limit_rps: float = 0.0  # per system; 0 = off. Over the limit: 429 + Retry-After
    rate_limit_burst: float = 0.0  # bucket size; 0 = max(1, rps)
    error_rate: float = 0.0  # share answered 500/502/503 (503 carries Retry-After)
    retry_after_s: int = 1  # Retry-After on 503
    export_delay_s: float = 0.0  # extra seconds on export/* (M4-M8)
    timeout_rate: float = 0.0  # share of responses that never come (sleep timeout_s)
    timeout_s: float = 3600.0
    malformed_rate: float = 0.0  # 200 with a body that is not JSON
    truncated_rate: float = 0.0  # 200 with a cut body and the full Content-Length
    session_max_requests: int = 0  # a MOOC session dies after N authenticated requests; 0 = off
    # forced variants, e.g. {"M1": "results"}; unset keys use each course's own default
    envelopes: dict[str, str] = field(default_factory=dict)
    routes: tuple[str, ...] = ()  # limit latency/errors/... to these route ids; () = all

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate", "malformed_rate", "truncated_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        for name in ("latency_ms", "jitter_ms", "rate_limit_rps", "rate_limit_burst",
                     "export_delay_s", "timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.session_max_requests < 0:
            raise ValueError("session_max_requests must be >= 0")
        for key, value in self.envelopes.items():
            if key not in VARIANTS:
                raise ValueError(f"unknown envelope key {key!r}; known: {sorted(VARIANTS)}")
            if value not in VARIANTS[key]:
                raise ValueError(f"unknown variant {value!r} for {key}; known: {VARIANTS[key]}")
        unknown = set(self.routes) - set(MOOC_ROUTES) - set(H5P_ROUTES)
        if unknown:
            raise ValueError(f"unknown route ids {sorted(unknown)}")
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "envelopes", dict(self.envelopes))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["routes"] = list(self.routes)
        return d

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class Plan:
    """What happens to one request."""

    delay_s: float = 0.0
    outcome: str = "ok"  # ok | rate_limited | timeout | error
    status: int = 200
    retry_after: int | None = None
    export_delay_s: float = 0.0
    body_fault: str | None = None  # None | malformed | truncated


def parse_envelopes(specs: list[str] | str | None) -> dict[str, str]:
    """``["M1=results", "M4=grade_data,M5=students"]`` → dict (CLI helper)."""
    out: dict[str, str] = {}
    if not specs:
        return out
    items = [specs] if isinstance(specs, str) else specs
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"envelope spec {part!r} is not KEY=VARIANT")
            out[key.strip()] = value.strip()
    FaultConfig(envelopes=out)  # validate
    return out


class Faults:
    """Runtime state of the fault injector (RNG, token buckets); reconfigurable while serving."""

    def __init__(self, config: FaultConfig | None = None, **overrides: Any) -> None:
        base = config or FaultConfig()
        self._lock = threading.Lock()
        self._config = dataclasses.replace(base, **overrides) if overrides else base
        self._rng = random.Random(self._config.seed)
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def config(self) -> FaultConfig:
        return self._config

    def update(self, **changes: Any) -> FaultConfig:
        """Change some settings (validated); a new ``seed`` restarts the RNG."""
        unknown = set(changes) - FaultConfig.field_names()
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}")
        if "routes" in changes:
            changes["routes"] = tuple(changes["routes"] or ())
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "seed" in changes:
                self._rng = random.Random(self._config.seed)
            self._buckets.clear()
        return self._config

    def reset(self) -> FaultConfig:
        with self._lock:
            self._config = FaultConfig()
            self._rng = random.Random(0)
            self._buckets.clear()
        return self._config

    def envelope(self, key: str, default: str) -> str:
        return self._config.envelopes.get(key, default)

    def _take_token(self, system: str) -> int | None:
        """None when allowed, else the Retry-After seconds."""
        cfg = self._config
        rps = cfg.rate_limit_rps
        cap = cfg.rate_limit_burst or max(1.0, rps)
        now = time.monotonic()
        tokens, last = self._buckets.get(system, (cap, now))
        tokens = min(cap, tokens + (now - last) * rps)
        if tokens >= 1.0:
            self._buckets[system] = (tokens - 1.0, now)
            return None
        self._buckets[system] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rps))

    def plan(self, route_id: str) -> Plan:
        cfg = self._config
        if cfg.routes and route_id not in cfg.routes:
            return Plan()
        with self._lock:
            rng = self._rng
            delay = cfg.latency_ms / 1000.0
            if cfg.jitter_ms:
                delay += rng.uniform(0.0, cfg.jitter_ms) / 1000.0
            if cfg.rate_limit_rps > 0:
                wait = self._take_token(system_of(route_id))
                if wait is not None:
                    return Plan(delay, "rate_limited", 429, wait)
            if cfg.timeout_rate and rng.random() < cfg.timeout_rate:
                return Plan(delay, "timeout", 0)
            if cfg.error_rate and rng.random() < cfg.error_rate:
                status = rng.choice(ERROR_STATUSES)
                return Plan(delay, "error", status, cfg.retry_after_s if status == 503 else None)
            export = cfg.export_delay_s if route_id in EXPORT_ROUTES else 0.0
            body_fault = None
            if cfg.malformed_rate and rng.random() < cfg.malformed_rate:
                body_fault = "malformed"
            elif cfg.truncated_rate and rng.random() < cfg.truncated_rate:
                body_fault = "truncated"
            return Plan(delay, "ok", 200, None, export, body_fault)
