"""Active health checks of every endpoint, and DNS discovery of the endpoints of `dns` backends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import aiohttp

from .backends import Backend
from .balancing import Endpoint
from .config import DnsConfig

# getaddrinfo's "no such name" and "no address": an answer, not a failure to get one (EAI_AGAIN is a blip).
NO_ADDRESS = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


async def check_endpoints_forever(backend: Backend) -> None:
    interval = backend.config.health.interval_s
    while True:
        await asyncio.gather(*(check_endpoint(backend, endpoint) for endpoint in list(backend.endpoints)))
        await asyncio.sleep(interval)


async def check_endpoint(backend: Backend, endpoint: Endpoint) -> None:
    url = endpoint.origin + backend.config.health_path
    timeout = aiohttp.ClientTimeout(total=backend.config.health.timeout_s)
    try:
        async with backend.session.get(url, headers=backend.headers, timeout=timeout) as response:
            await response.read()
            healthy = 200 <= response.status < 300
    except (aiohttp.ClientError, TimeoutError, OSError):
        healthy = False
    endpoint.record_check(healthy)


async def resolve(dns: DnsConfig) -> list[str]:
    """Base URLs of every address the name resolves to, in a stable order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        dns.host, dns.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses = sorted({str(info[4][0]) for info in infos})
    return [
        f"{dns.scheme}://{f'[{address}]' if ':' in address else address}:{dns.port}{dns.path_prefix}"
        for address in addresses
    ]


async def refresh_endpoints(backend: Backend) -> None:
    dns = backend.config.dns
    assert dns is not None
    try:
        urls = await resolve(dns)
    except OSError as exc:
        if backend.activator is not None and getattr(exc, "errno", None) in NO_ADDRESS:
            urls = []  # a headless Service with no ready pod has no name at all: the backend is at zero
        else:
            # Keep the endpoints we know: a DNS blip must not take a healthy backend out.
            print(f"llm-gateway: cannot resolve {dns.host} for backend {backend.name}: {exc}", file=sys.stderr)
            return
    if not urls and backend.activator is not None:
        for endpoint in backend.endpoints:
            backend.forget_endpoint(endpoint)
        backend.endpoints = []
        return
    if not urls:
        return
    known = {endpoint.base_url: endpoint for endpoint in backend.endpoints}
    # Keep existing Endpoint objects so their in-flight counts and health carry over.
    backend.endpoints = [known.get(url) or backend.new_endpoint(url) for url in urls]
    for url, endpoint in known.items():
        if url not in urls:
            backend.forget_endpoint(endpoint)
    if backend.activator is not None:
        backend.activator.notify()


async def refresh_endpoints_forever(backend: Backend) -> None:
    assert backend.config.dns is not None
    while True:
        await asyncio.sleep(backend.config.dns.refresh_s)
        with contextlib.suppress(Exception):
            await refresh_endpoints(backend)
