"""`python -m llm_gateway --config FILE`: serve until SIGTERM; SIGHUP reloads the config file."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import uvloop

from . import ledger_cli
from .config import ConfigError, GatewayConfig, load_config
from .server import Gateway, start_server, stop_server


async def serve(config_path: str) -> None:
    config = load_config(config_path)
    gateway = Gateway(config, config_path)
    runner = await start_server(gateway, config.server.host, config.server.port)
    print(f"llm-gateway: listening on {config.server.host}:{config.server.port}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        task = asyncio.create_task(gateway.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    gateway.draining = True
    delay = gateway.runtime.config.server.shutdown_delay_s
    print(f"llm-gateway: draining: readiness off, serving {delay:g} s more, then closing", file=sys.stderr, flush=True)
    await asyncio.sleep(delay)
    await stop_server(gateway, runner)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ledger_cli.COMMANDS:
        return ledger_cli.main(argv)
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    parser.add_argument("--config", help="YAML config file (see llm_gateway.config.GatewayConfig)")
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    parser.add_argument("--schema", action="store_true", help="print the config's JSON Schema and exit")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(GatewayConfig.model_json_schema(), indent=2))
        return 0
    if not args.config:
        parser.error("--config is required")
    try:
        if args.check:
            load_config(args.config)
            print(f"{args.config}: valid")
            return 0
        uvloop.run(serve(args.config))
    except ConfigError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
