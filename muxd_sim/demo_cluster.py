"""``make demo-cluster``: a throwaway PostgreSQL, three ``muxd run`` boxes of 16 simulated
modems each, and the Onlinesim stand-in playing the v1 driver against ONE box's address: it
takes numbers (whichever box holds their SIM), the SIM's modem receives a code, the box
holding it pushes it, the driver finishes the operation. A summary of the fleet every few
seconds; Ctrl-C stops everything and removes it.

``python -m muxd_sim.demo_cluster [--ports 16] [--rounds N]`` (N = 0: until interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import tempfile
from pathlib import Path
from typing import Final

import asyncpg

from muxd.cluster.records import ClusterUnavailable
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import PostgresMissing, ThrowawayPostgres
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim_v1 import V1Driver

KEY: Final = "demo-cluster-key"
SERVICES: Final = ["vk", "wa", "tg"]
BOXES: Final = ("box-a", "box-b", "box-c")
# How often the summary is printed, and the pause between the driver's operations.
SUMMARY_EVERY: Final = 3.0
DRIVER_PAUSE: Final = 0.5
# Bounds: the boxes' start, one push.
START_WAIT: Final = 60.0
PUSH_WAIT: Final = 30.0
POLL: Final = 0.2


def _config(tmp: Path, name: str, dsn: str, v1_port: int, http_port: int, driver: V1Driver) -> Path:
    path = tmp / f"{name}.toml"
    services = ", ".join(f'"{s}"' for s in SERVICES)
    path.write_text(
        f'state_dir = "{tmp / name / "state"}"\n'
        f'[modems]\nports = ["{tmp / name / "dev" / "port*"}"]\n'
        f'[numbers]\nfile = "{tmp / name / "numbers.csv"}"\n'
        f'[upstream]\napi = "v1"\napi_key = "{KEY}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[v1]\nlisten = "127.0.0.1:{v1_port}"\npush_sms_url = "{driver.push_url}"\n'
        f'push_sms_rent_url = "{driver.rent_url}"\nservices = [{services}]\n'
        f'[cluster]\ndatabase = "{dsn}"\nbox = "{name}"\n'
    )
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _summary(store: ClusterStore, driver: V1Driver) -> None:
    while True:
        try:
            boxes = await store.boxes()
            line = "  ".join(
                f"{b.name}: {'live' if b.live else 'DOWN'} {b.sellable} numbers"
                f" {b.open_operations} open"
                for b in boxes
            )
        except (ClusterUnavailable, asyncpg.PostgresError) as exc:
            line = f"PostgreSQL: {exc}"
        print(f"[fleet] {line}  | pushes {len(driver.pushes)}", flush=True)
        await asyncio.sleep(SUMMARY_EVERY)


async def _drive(
    driver: V1Driver, sims: dict[str, ModemSimulator], rounds: int, rng: random.Random
) -> None:
    done = 0
    while rounds == 0 or done < rounds:
        service = rng.choice(SERVICES)
        answer = await driver.get_number("russia", "any", service, 10)
        if answer.get("status") != "SUCCESS":
            await asyncio.sleep(DRIVER_PAUSE)
            continue
        number = "+" + str(answer["number"])
        holder, port = next(
            (name, p) for name, sim in sims.items() for p in sim.ports if p.number == number
        )
        code = f"{rng.randrange(10**6):06d}"
        pushes = len(driver.pushes)
        sims[holder].inject(port.index, service.upper(), f"{service}: your code {code}")
        await driver.wait_pushes(pushes + 1, timeout=PUSH_WAIT)
        await driver.finish(answer["activationId"], 3)
        done += 1
        print(
            f"[driver] operation {answer['activationId']}: number on {holder}, code {code}"
            f" pushed by {holder}, finished",
            flush=True,
        )
        await asyncio.sleep(DRIVER_PAUSE)


async def run(ports: int, rounds: int) -> int:
    try:
        pg = ThrowawayPostgres()
    except PostgresMissing as exc:
        print(f"demo-cluster: {exc}", file=sys.stderr)
        return 1
    procs: list[asyncio.subprocess.Process] = []
    with pg, tempfile.TemporaryDirectory(prefix="muxd-demo-cluster-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with contextlib.AsyncExitStack() as stack:
            driver = await stack.enter_async_context(V1Driver(api_key=KEY))
            sims: dict[str, ModemSimulator] = {}
            v1_ports: dict[str, int] = {}
            for i, name in enumerate(BOXES):
                (tmp / name / "dev").mkdir(parents=True)
                sim = await stack.enter_async_context(
                    ModemSimulator(ports, tmp / name / "dev", seed=i + 1)
                )
                write_numbers_csv(sim, tmp / name / "numbers.csv", share=1.0)
                sims[name] = sim
                v1_ports[name] = _free_port()
                config = _config(tmp, name, pg.dsn, v1_ports[name], _free_port(), driver)
                log = (tmp / f"{name}.log").open("ab")
                argv = [sys.executable, "-m", "muxd", "run", "-c", str(config)]
                proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
                procs.append(proc)
                log.close()
            store = await stack.enter_async_context(ClusterStore(pg.dsn, "demo"))
            driver.base_url = f"http://127.0.0.1:{v1_ports[BOXES[0]]}"
            print(f"demo-cluster: Onlinesim calls {driver.base_url} only ({BOXES[0]})", flush=True)
            try:
                async with asyncio.timeout(START_WAIT):
                    while True:
                        with contextlib.suppress(ClusterUnavailable, asyncpg.PostgresError):
                            live = await store.live_numbers()
                            if len(live) == ports * len(BOXES):
                                break
                        await asyncio.sleep(POLL)
                summary = asyncio.create_task(_summary(store, driver))
                try:
                    await _drive(driver, sims, rounds, random.Random(1))
                finally:
                    summary.cancel()
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    await proc.wait()
            failed = driver.failed()
            print(f"demo-cluster: {len(driver.pushes)} pushes, {len(failed)} failed checks")
            return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo-cluster", description=__doc__)
    parser.add_argument("--ports", type=int, default=16, help="simulated modems per box")
    parser.add_argument("--rounds", type=int, default=0, help="operations (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args.ports, args.rounds))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
