"""The `graft` command: run the API, a worker, both, or the migrations."""

import argparse
import os
import signal
import subprocess
import sys

from service.settings import get_settings


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Bring the database schema up to date."""
    from service.migrate import upgrade

    settings = get_settings()
    upgrade(settings.sqlalchemy_url)
    print(f"database at {_safe(settings.sqlalchemy_url)} is up to date")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    import uvicorn

    from service.app import create_app

    settings = get_settings()
    if args.migrate:
        cmd_migrate(args)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker that trains jobs."""
    from service.dispatch import job_queue
    from workers.celery_app import get_app
    from workers.pipeline.device import resolve_device

    settings = get_settings()
    accelerator = "gpu" if resolve_device(settings.device).type == "cuda" else "cpu"
    queues = [job_queue(settings, accelerator), settings.queue]  # jobs only this kind of worker may run, and any
    argv = [
        "worker", "--loglevel", settings.log_level.upper(), "--queues", ",".join(queues),
        "--concurrency", str(settings.worker_concurrency), "--pool", args.pool,
        "--hostname", f"graft-{accelerator}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ]
    get_app().worker_main(argv)
    return 0


def cmd_sweeper(_args: argparse.Namespace) -> int:
    """Run only the sweeper that re-dispatches lost jobs (the API runs one too, unless GRAFT_SWEEP_INTERVAL_S=0)."""
    import logging
    import time

    from service.sweeper import sweep

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    interval = settings.sweep_interval_s or 5.0
    while True:
        try:
            sweep(settings)
        except Exception:  # noqa: BLE001 - outages pass; the next sweep tries again
            logging.getLogger("graft.sweeper").warning("sweep failed", exc_info=True)
        time.sleep(interval)


def cmd_up(args: argparse.Namespace) -> int:
    """Migrate, then run the API and one worker together (the embedded default needs no other server)."""
    cmd_migrate(args)
    worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--pool", args.pool])
    try:
        args.migrate = False
        return cmd_api(args)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _safe(url: str) -> str:
    """A database URL with any password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `graft` command."""
    parser = argparse.ArgumentParser(prog="graft", description="Graft: a self-hosted transfer-learning service.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("sweeper", help="re-dispatch lost jobs (the API also does)").set_defaults(func=cmd_sweeper)
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--migrate", action="store_true", help="apply migrations first")
    api.set_defaults(func=cmd_api)
    for name, func, text in (("worker", cmd_worker, "run a training worker"),
                             ("up", cmd_up, "migrate, then run the API and a worker together")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"],
                       help="Celery execution pool (default prefork: a crashed job cannot take the worker down)")
        p.set_defaults(func=func, migrate=True)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
