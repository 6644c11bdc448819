"""Find or start the real PostgreSQL and Redis the tests need; never skip for a missing service."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

PG_HOST, PG_PORT = os.environ.get("GRAFT_TEST_PG_HOST", "127.0.0.1"), int(os.environ.get("GRAFT_TEST_PG_PORT", 5432))
REDIS_HOST, REDIS_PORT = os.environ.get("GRAFT_TEST_REDIS_HOST", "127.0.0.1"), int(
    os.environ.get("GRAFT_TEST_REDIS_PORT", 6379)
)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, seconds: float) -> bool:
    """Wait up to `seconds` for host:port to accept connections."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=False, capture_output=True, timeout=60)


def ensure_postgres() -> tuple[str, int, callable]:
    """(host, port, stop) of a reachable PostgreSQL: the local one, started if installed but down, or a private one."""
    if port_open(PG_HOST, PG_PORT):
        return PG_HOST, PG_PORT, lambda: None
    if shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql"):
        for version in os.listdir("/etc/postgresql"):
            _run(f"pg_ctlcluster --skip-systemctl-redirect {version} main start")
        if wait_port(PG_HOST, PG_PORT, 20):
            return PG_HOST, PG_PORT, lambda: None
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin")) + [os.path.dirname(shutil.which("initdb") or "")]
    for bindir in reversed([b for b in bindirs if b and os.path.exists(os.path.join(b, "initdb"))]):
        data = tempfile.mkdtemp(prefix="graft-pg-")
        port = free_port()
        user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if user:
            shutil.chown(data, "postgres")
        subprocess.run(user + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust"], check=True,
                       capture_output=True)
        proc = subprocess.Popen(user + [f"{bindir}/postgres", "-D", data, "-p", str(port), "-k", data,
                                        "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if wait_port("127.0.0.1", port, 30):
            return "127.0.0.1", port, lambda: (proc.terminate(), proc.wait(30), shutil.rmtree(data, True))
        proc.kill()
    pytest.exit(
        "PostgreSQL is needed for the tests and none is reachable at "
        f"{PG_HOST}:{PG_PORT}, nor could one be started: install it (apt-get install postgresql) "
        "or set GRAFT_TEST_PG_HOST/GRAFT_TEST_PG_PORT", returncode=3,
    )


def ensure_redis() -> tuple[str, int, callable]:
    """(host, port, stop) of a reachable Redis: the local one, started if installed but down, or a private one."""
    if port_open(REDIS_HOST, REDIS_PORT):
        return REDIS_HOST, REDIS_PORT, lambda: None
    server = shutil.which("redis-server")
    if server:
        _run(f'{server} --daemonize yes --bind 127.0.0.1 --port {REDIS_PORT} --save "" --appendonly no')
        if wait_port(REDIS_HOST, REDIS_PORT, 10):
            return REDIS_HOST, REDIS_PORT, lambda: None
        port = free_port()
        proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        if wait_port("127.0.0.1", port, 10):
            return "127.0.0.1", port, lambda: (proc.terminate(), proc.wait(10))
    pytest.exit(
        f"Redis is needed for the tests and none is reachable at {REDIS_HOST}:{REDIS_PORT}, nor could one be "
        "started: install it (apt-get install redis-server) or set GRAFT_TEST_REDIS_HOST/GRAFT_TEST_REDIS_PORT",
        returncode=3,
    )


class PrivatePostgres:
    """A PostgreSQL server of one test's own (initdb in a temporary folder), to stop and start at will."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs:
            pytest.fail("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are needed for the restart test")
        self.bindir, self.port = bindirs[-1], free_port()
        self.data = tempfile.mkdtemp(prefix="graft-pg-private-")
        self.user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if self.user:
            shutil.chown(self.data, "postgres")
        subprocess.run(self.user + [f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust"],
                       check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        subprocess.run(self.user + [f"{self.bindir}/pg_ctl", "-D", self.data, "-o", options, "-w", "-t", "60", *args],
                       check=True, capture_output=True, timeout=90)

    def start(self) -> "PrivatePostgres":
        self._ctl("start", "-l", os.path.join(self.data, "server.log"))
        return self

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data, ignore_errors=True)
