"""muxd.pdu is sans-I/O: importing it pulls in no event loop, serial or HTTP stack."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("asyncio", "serial", "serial_asyncio_fast", "aiohttp", "uvloop", "logging", "socket")


def test_import_pulls_in_no_io_modules() -> None:
    code = (
        "import sys\n"
        "import muxd.pdu\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == ""


def test_no_io_or_clock_imports_in_source() -> None:
    import ast
    import pathlib

    import muxd.pdu

    banned = {"asyncio", "serial", "aiohttp", "logging", "time", "socket", "threading", "os"}
    root = pathlib.Path(muxd.pdu.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in banned, (path.name, name)
                assert top in {
                    "__future__",
                    "codecs",
                    "collections",
                    "datetime",
                    "msgspec",
                    "muxd",
                }, name
