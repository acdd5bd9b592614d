"""A real redis-server (Debian's package, scripts/install-valkey.sh) on 127.0.0.1 for the shared-limits tests.

Started in a temp dir on a free port with a password (requirepass, as ElastiCache's auth token), no persistence
(so a restart comes back empty, like a store that lost its data), and stopped, killed and restarted on demand.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "test-store-secret"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# redis-cli comes with the server (Debian's redis-server depends on redis-tools): the tests read and change the store
# with it, independently of the gateway's own client.
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--requirepass",
            PASSWORD,
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not start: {(self.directory / 'redis.log').read_text()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
                return b"+PONG" in _read_until(sock, b"+PONG", 0.5)
        except OSError:
            return False

    def command(self, *args: str) -> str:
        """One command through redis-cli; its reply as redis-cli prints it (nil: an empty string)."""
        argv = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", "-a", PASSWORD, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    def kill(self) -> None:
        """SIGKILL: the store vanishes with all its keys (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self) -> None:
        """Kill and start again on the same port: back empty."""
        self.kill()
        self.start()


def _read_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
