"""``muxd demo``: simulator, Onlinesim stand-in and daemon together in one process."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from muxd.app import Daemon
from muxd.config import Config, HttpConfig, ModemsConfig, NumbersConfig, UpstreamConfig
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.onlinesim import Onlinesim, serve

DEMO_KEY = "demo-key"
# The summary line is refreshed this often.
SUMMARY_INTERVAL = 1.0
# Give the daemon this long at the end to forward what is still in flight.
DRAIN_TIMEOUT = 15.0
# Ports initialise and their numbers get published within seconds; don't wait forever.
READY_TIMEOUT = 60.0


def demo_config(workdir: Path, stand_in_port: int) -> Config:
    return Config(
        state_dir=str(workdir / "state"),
        modems=ModemsConfig(ports=[str(workdir / "dev" / "port*")], sweep_interval=30.0),
        numbers=NumbersConfig(file=str(workdir / "numbers.csv")),
        upstream=UpstreamConfig(
            url=f"http://127.0.0.1:{stand_in_port}",
            api_key=DEMO_KEY,
            batch_delay=0.2,
        ),
        http=HttpConfig(listen="127.0.0.1:0"),
    )


def _summary(daemon: Daemon, injected: int, stub: Onlinesim, total_ports: int) -> str:
    ports = daemon.status.ports()
    up = sum(1 for p in ports if p.status.value == "ready")
    sellable = sum(1 for p in ports if p.sellable)
    received, forwarded = daemon.tally.received, daemon.tally.forwarded
    return (
        f"ports up {up}/{total_ports} · sellable {sellable} · published {len(stub.numbers)}"
        f" · SMS injected {injected} · received {received} · forwarded {forwarded}"
        f" · at stand-in {len(stub.messages)}"
    )


async def run_demo(*, ports: int, duration: float | None, rate: float, keep: bool = False) -> None:
    """Run the demo; on Ctrl-C (cancellation) print the tally so far, then stop.

    The temporary directory (journal, ptys, ground truth) is removed at the end unless ``keep``;
    either way the last line says what became of it.
    """
    workdir = Path(tempfile.mkdtemp(prefix="muxd-demo-"))
    tally: list[str] = []
    (workdir / "dev").mkdir()
    stub = Onlinesim(api_key=DEMO_KEY)
    runner, stand_in_port = await serve(stub, "127.0.0.1", 0)
    daemon_task: asyncio.Task[None] | None = None
    load_task: asyncio.Task[int] | None = None
    try:
        async with ModemSimulator(
            ports, workdir / "dev", log_path=workdir / "injected.jsonl"
        ) as sim:
            write_numbers_csv(sim, workdir / "numbers.csv", share=1.0)
            daemon = Daemon(demo_config(workdir, stand_in_port))
            daemon_task = asyncio.create_task(daemon.run(), name="daemon")
            await asyncio.wait(
                [daemon_task, asyncio.create_task(daemon.started.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            if daemon_task.done():
                daemon_task.result()
            print(f"muxd demo in {workdir}")
            print(f"  status page   http://127.0.0.1:{daemon.http_port}/")
            print(f"  metrics       http://127.0.0.1:{daemon.http_port}/metrics")
            print(f"  stand-in      http://127.0.0.1:{stand_in_port}/ (Onlinesim v2)")
            print(f"  modems        {workdir / 'dev'}/port000 … ({ports} ports)")
            print(f"  ground truth  {workdir / 'injected.jsonl'}")
            print("Ctrl-C stops." if duration is None else f"Running for {duration:g} s.")
            # Start the load once every port's number is on sale (the stand-in, like Onlinesim,
            # refuses SMS for numbers it has not been told about).
            with contextlib.suppress(TimeoutError):
                await stub.wait_until(lambda: len(stub.numbers) >= ports, timeout=READY_TIMEOUT)
            load_task = asyncio.create_task(sim.run_load(rate, duration=duration), name="load")
            injected_total = 0
            while not load_task.done():
                tally[:] = [_summary(daemon, sim.injected, stub, ports)]
                sys.stdout.write("\r" + tally[0] + " ")
                sys.stdout.flush()
                await asyncio.wait([load_task], timeout=SUMMARY_INTERVAL)
                if daemon_task.done():
                    daemon_task.result()
            injected_total = load_task.result()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.status.wait_forwarded(injected_total), DRAIN_TIMEOUT)
            print("\r" + _summary(daemon, injected_total, stub, ports) + " ")
            lost = injected_total - len(stub.messages)
            print(f"done: {injected_total} injected, {len(stub.messages)} forwarded, lost {lost}")
    except asyncio.CancelledError:
        if tally:
            print("\rstopped: " + tally[0])
        raise
    finally:
        for task in (load_task, daemon_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await runner.cleanup()
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"removed {workdir}")
