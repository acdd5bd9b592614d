"""A pod's network sandbox for one test: run inside `unshare --user --map-root-user --net --mount`.

It gets its own loopback (so the rendered port, 8080, collides with nothing on the host), an /etc/hosts that
resolves the given cluster DNS names to 127.0.0.1, and a fake vLLM there on the given port. It then starts the
container's process, probes it over HTTP as the kubelet and a client would, stops it with SIGTERM and prints what
it saw as one JSON object. The test makes the assertions.

Input (stdin, JSON): argv, env, cwd, hosts, upstream_port, port, probes {name: path}, team_key, model, log_dir.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gateway_image" / "tests"))
from fake_upstream import FakeUpstream

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """A new network namespace starts with `lo` down (netdevice(7): SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def hosts_file(names: list[str], folder: Path) -> None:
    path = folder / "hosts"
    path.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {name}\n" for name in names))
    subprocess.run(["mount", "--bind", str(path), "/etc/hosts"], check=True)


def http(method: str, url: str, headers: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode()}
    except OSError as error:
        return {"status": None, "body": repr(error)}


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        seen = http("GET", url)
        if seen["status"] == 200 or process.poll() is not None or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def main() -> None:
    spec = json.load(sys.stdin)
    log_dir = Path(spec["log_dir"])
    loopback_up()
    hosts_file(spec["hosts"], log_dir)
    upstream = FakeUpstream("vllm")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(upstream.start(spec["upstream_port"]), loop).result(10)

    seen: dict[str, Any] = {}
    try:
        process = subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec["cwd"],
            stdout=(log_dir / "stdout").open("wb"),
            stderr=(log_dir / "stderr").open("wb"),
        )
    except OSError as error:
        # What the kubelet reports as a container that cannot start (e.g. exec of `--config`: no such file).
        asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
        print(json.dumps({"start_error": repr(error)}))
        return
    try:
        base = f"http://127.0.0.1:{spec['port']}"
        seen["liveness"] = wait_for(base + spec["probes"]["liveness"], process, 20)
        # The gateway resolves the headless Service's name, then checks the endpoint before it is ready.
        seen["readiness"] = wait_for(base + spec["probes"]["readiness"], process, 30)
        auth = {"Authorization": f"Bearer {spec['team_key']}"}
        seen["models"] = http("GET", base + "/v1/models", auth)
        chat = {"model": spec["model"], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
        seen["chat"] = http("POST", base + "/v1/chat/completions", auth, chat)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            seen["exit_code"] = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            seen["exit_code"] = process.wait(5)
        asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    seen["upstream_authorization"] = [headers.get("Authorization") for headers in upstream.headers]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
