"""A real PostgreSQL for tests: initdb + postgres on 127.0.0.1:<free port> in a temp dir, stopped afterwards.

Reusable: `PgServer` can be SIGKILLed and restarted on the same data dir (crash recovery, as after an OOM kill), and
the `pg_server` / `pg_dsn` fixtures give a session-wide server and a fresh database per test. The binaries come from
Debian's `postgresql` package (scripts/install-postgres.sh): on PATH where symlinked, else in
/usr/lib/postgresql/<version>/bin, where a fresh Debian install puts them (postgresql-common wraps only the clients).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def postgres_bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    # Newest version first: /usr/lib/postgresql/15/bin, /usr/lib/postgresql/16/bin, ...
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One postgres process tree on a data dir of its own; `kill()` + `start()` is a crash and a recovery."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        # initdb and postgres refuse to run as root; the container's tests run as root, so they run as `postgres`
        # (created by the Debian package) or `nobody`, in a temp dir that user owns (pytest's tmp_path is 0700).
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres" if _user_exists("postgres") else "nobody"
        self.root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None
        self._run(
            [str(bin_dir / "initdb"), "-D", str(self.data), "-U", "ledger", "--auth=trust", "--no-sync", "-E", "UTF8"]
        )

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://ledger@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=self.user, cwd=self.root, timeout=60)

    def start(self) -> None:
        # fsync off: a SIGKILL of the server keeps what the kernel holds, only a machine crash would lose it.
        # synchronous_commit stays on, so a committed batch survives the kill, as in production.
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=50",
            "-c",
            "shared_buffers=32MB",
        ]
        log = self.log_path.open("ab")
        # A session of its own, so that kill() reaches the postmaster and all its backends at once.
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, user=self.user, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ledger", "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server (postmaster and backends): connections drop, nothing is shut down cleanly."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, checkpoint
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def create_database(self, name: str) -> str:
        self._run([str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ledger", name])
        return self.dsn_for(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def new_pg_server() -> PgServer:
    """A started server, or a skip (a failure under CI=true, see conftest.py) when PostgreSQL is not installed."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed: run scripts/install-postgres.sh")
    server = PgServer(bin_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = new_pg_server()
    try:
        yield server
    finally:
        server.close()


_databases = itertools.count()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.create_database(f"test_{os.getpid()}_{next(_databases)}")
