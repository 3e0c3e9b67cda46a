"""Benchmark (not collected by pytest): three ``muxd run`` boxes of N simulated modems on a
throwaway PostgreSQL; box a's idle CPU with the cluster on, then GET_NUMBER through box a for
numbers whose SIMs are on boxes b and c: one at a time, and rounds of 100 at once (from the
benchmark's process, then from a lean client process of its own: the figure); then, as
variants, the same from an aiohttp client process, and rounds of 100 spread over the three
boxes, each request masking the SIMs of the box it reaches.

``python -m benchmarks.cluster_boxes [PORTS] [IDLE_SECONDS]`` (defaults 256 and 30). The
Onlinesim stand-in and every simulated modem run in this process, beside the measurement.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from muxd.cluster.throwaway import ThrowawayPostgres
from tests.cluster import boxes as bx

CONCURRENT = 100
ROUNDS = 3
SEQUENTIAL = 20
SETTLE = 10.0  # after start, before the idle measurement


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))] * 1000


async def main(ports: int, idle: float) -> None:
    bx.START_WAIT = 240.0
    bx.UVLOOP = True  # as `muxd run` runs by default
    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as tmp_dir:
        started = time.monotonic()
        async with bx.cluster(Path(tmp_dir), pg.dsn, ["a", "b", "c"], ports) as (
            boxes,
            driver,
            _observer,
        ):
            a = boxes[0]
            assert a.proc is not None
            print(f"3 boxes x {ports} ports live in {time.monotonic() - started:.1f} s")
            await asyncio.sleep(SETTLE)
            c0, w0 = cpu_seconds(a.proc.pid), time.monotonic()
            await asyncio.sleep(idle)
            c1, w1 = cpu_seconds(a.proc.pid), time.monotonic()
            share = 100 * (c1 - c0) / (w1 - w0)
            print(f"idle CPU of box a over {idle:.0f} s: {share:.2f} % of a core")
            driver.base_url = a.url
            mask = [int(a.prefix)]
            one = []
            for _ in range(SEQUENTIAL):
                t = time.perf_counter()
                answer = await driver.get_number("russia", "any", "vk", 10, mask)
                one.append(time.perf_counter() - t)
                await driver.finish(answer["activationId"], 4)
            one.sort()
            print(
                f"GET_NUMBER one at a time: p50 {pct(one, 0.5):.1f} ms, max {one[-1] * 1000:.1f} ms"
            )
            for r in range(ROUNDS):
                lat: list[float] = []

                async def timed(lat: list[float] = lat) -> dict[str, object]:
                    t = time.perf_counter()
                    answer = await driver.get_number("russia", "any", "vk", 10, mask)
                    lat.append(time.perf_counter() - t)
                    return answer

                answers = await asyncio.gather(*(timed() for _ in range(CONCURRENT)))
                ok = [x for x in answers if x.get("status") == "SUCCESS"]
                lat.sort()
                print(
                    f"round {r}: {CONCURRENT} at once: {len(ok)} reserved,"
                    f" {len({x['number'] for x in ok})} distinct numbers,"
                    f" p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms"
                )
                for x in ok:
                    await driver.finish(int(str(x["activationId"])), 4)
            print(f"driver checks failed: {len(driver.failed())}")
            print("the figure: the same from a lean client process (benchmarks.http_load):")
            burst = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.cluster_burst", a.url, bx.KEY,
                str(mask[0]), str(CONCURRENT),
            )  # fmt: skip
            await burst.wait()
            print("variant, not the figure: the same from an aiohttp client process:")
            burst = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.cluster_burst", "--aiohttp", a.url, bx.KEY,
                str(mask[0]), str(CONCURRENT),
            )  # fmt: skip
            await burst.wait()
            print(
                "variant, not the figure: the same spread over the three boxes in turn, as a"
                " load balancer would, each request masking the SIMs of the box it goes to:"
            )
            spread = [arg for box in boxes for arg in (box.url, box.prefix)]
            burst = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.cluster_burst", a.url, bx.KEY,
                str(mask[0]), str(CONCURRENT), *spread[2:],
            )  # fmt: skip
            await burst.wait()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 256,
            float(sys.argv[2]) if len(sys.argv) > 2 else 30.0,
        )
    )
