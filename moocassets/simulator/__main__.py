"""``python -m moocassets.simulator``: serve a simulated MOOC + H5P on loopback."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn

from .app import create_app
from .faults import FaultConfig, parse_envelopes
from .server import h5p_base, mooc_base
from .world import World, WorldConfig

log = logging.getLogger("moocassets.simulator")


EMAIL_ENV = "MOOCASSETS_MOOC_EMAIL"
PASSWORD_ENV = "MOOCASSETS_MOOC_PASSWORD"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m moocassets.simulator",
                                description="Simulated Open edX export API + H5P plugin API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--courses", type=int, default=3)
    p.add_argument("--learners", type=int, default=200, help="learners per course")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--now", help="simulated clock start, ISO-8601 (default: a fixed instant, "
                   f"{WorldConfig().now.isoformat()}); 'wall' = the current time")
    p.add_argument("--mooc-email", default=os.environ.get(EMAIL_ENV) or "ops@moocassets.local",
                   help=f"default: ${EMAIL_ENV}, else ops@moocassets.local")
    # prefer the environment for the password: command lines are visible to every local user
    p.add_argument("--mooc-password", default=os.environ.get(PASSWORD_ENV),
                   help=f"default: ${PASSWORD_ENV}, else a random one printed once at start-up")
    p.add_argument("--session-id", action="append", default=[],
                   help="a static operator session cookie value (repeatable)")
    g = p.add_argument_group("faults (all off by default)")
    g.add_argument("--fault-seed", type=int, default=0)
    g.add_argument("--latency-ms", type=float, default=0.0)
    g.add_argument("--jitter-ms", type=float, default=0.0)
    g.add_argument("--rate-limit", type=float, default=0.0, help="requests/s per system")
    g.add_argument("--rate-limit-burst", type=float, default=0.0)
    g.add_argument("--error-rate", type=float, default=0.0, help="share of 500/502/503")
    g.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 503")
    g.add_argument("--export-delay-s", type=float, default=0.0)
    g.add_argument("--timeout-rate", type=float, default=0.0)
    g.add_argument("--timeout-s", type=float, default=3600.0)
    g.add_argument("--malformed-rate", type=float, default=0.0)
    g.add_argument("--truncated-rate", type=float, default=0.0)
    g.add_argument("--session-max-requests", type=int, default=0)
    g.add_argument("--envelope", action="append", default=[],
                   help="force a variant, KEY=VARIANT[,...] (e.g. M1=results,M4=grade_data)")
    g.add_argument("--fault-routes", default="", help="comma-separated route ids (default: all)")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    kw: dict[str, datetime] = {}
    if args.now == "wall":
        kw["now"] = datetime.now(UTC).replace(microsecond=0)
    elif args.now:
        now = datetime.fromisoformat(args.now)
        kw["now"] = now if now.tzinfo else now.replace(tzinfo=UTC)
    t0 = time.perf_counter()
    world = World(WorldConfig(courses=args.courses, learners=args.learners, seed=args.seed, **kw))
    faults = FaultConfig(
        seed=args.fault_seed, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
        rate_limit_rps=args.rate_limit, rate_limit_burst=args.rate_limit_burst,
        error_rate=args.error_rate, retry_after_s=args.retry_after,
        export_delay_s=args.export_delay_s, timeout_rate=args.timeout_rate,
        timeout_s=args.timeout_s, malformed_rate=args.malformed_rate,
        truncated_rate=args.truncated_rate, session_max_requests=args.session_max_requests,
        envelopes=parse_envelopes(args.envelope),
        routes=tuple(r.strip() for r in args.fault_routes.split(",") if r.strip()))
    password = args.mooc_password
    if not password:
        password = secrets.token_urlsafe(12)
        print(f"generated MOOC password for {args.mooc_email}: {password}", flush=True)
    app = create_app(world, mooc_email=args.mooc_email, mooc_password=password,
                     session_ids=args.session_id, faults=faults)
    root = f"http://{args.host}:{args.port}"
    log.info("world: %d courses x %d learners, seed %d, now %s (generated in %.2fs)",
             args.courses, args.learners, args.seed, world.now.isoformat(),
             time.perf_counter() - t0)
    log.info("MOOC base url: %s", mooc_base(root))
    log.info("H5P base url:  %s", h5p_base(root))
    log.info("controls:      %s/__sim__/health", root)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
