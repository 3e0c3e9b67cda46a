"""A throwaway PostgreSQL server in a temporary directory, for tests, benchmarks and demos.

``initdb`` a data directory, ``pg_ctl start`` it on a free loopback port with its unix socket in
the same directory, and remove everything on :meth:`ThrowawayPostgres.close`. Nothing of the
machine's own PostgreSQL (its service, its clusters, its port 5432) is used or touched.

The binaries come from ``PATH`` or, where Debian's ``postgresql`` package left them off it, from
``/usr/lib/postgresql/VERSION/bin`` (the newest version). PostgreSQL refuses to run as root:
when the caller is root, the server runs as the ``postgres`` user (created by Debian's package),
or as ``nobody`` where that user does not exist, and the temporary directory is handed to it.
Authentication is ``trust`` for the loopback and the socket only: the server holds test data.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

# initdb of an empty cluster takes about a second; this only stops a hung binary.
INITDB_TIMEOUT = 120.0
# pg_ctl start/stop -w waits for the server itself; this bounds pg_ctl.
PG_CTL_TIMEOUT = 60.0
# Users the server runs as when the caller is root, in order of preference.
SERVICE_USERS = ("postgres", "nobody")
# The superuser initdb creates (connect as this user, database "postgres").
SUPERUSER = "muxd"
# Enough connections for a benchmark's 100 concurrent requests plus several boxes' pools.
MAX_CONNECTIONS = 300
# Where the temporary directory goes when the server runs as another user.
SHARED_TMP = "/tmp"
# Where Debian installs the server binaries (not on PATH).
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "install Debian's 'postgresql' package (make ops-tools or .ci/install-ops.sh)"


class PostgresMissing(RuntimeError):
    """initdb/pg_ctl are not installed."""


def find_binary(name: str) -> str:
    """The path of a PostgreSQL server binary: PATH first, then Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for directory in candidates:
        path = directory / name
        if os.access(path, os.X_OK):
            return str(path)
    raise PostgresMissing(f"{name} not found on PATH or in {DEBIAN_BIN_GLOB}: {INSTALL_HINT}")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (the caller) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresMissing(f"running as root and none of the users {SERVICE_USERS} exists")


class ThrowawayPostgres:
    """One temporary PostgreSQL server; a context manager (started on enter, removed on exit)."""

    def __init__(self, *, port: int | None = None) -> None:
        self._initdb = find_binary("initdb")
        self._pg_ctl = find_binary("pg_ctl")
        self._user = _service_user()
        self.port = port or _free_port()
        # The service user must reach the directory: under /tmp (world-traversable), not under
        # a TMPDIR that may be private to root.
        parent = None if self._user is None else SHARED_TMP
        self.root = Path(tempfile.mkdtemp(prefix="muxd-pg-", dir=parent))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.running = False

    @property
    def dsn(self) -> str:
        """The DSN of the ``postgres`` database over TCP on the loopback."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle ------------------------------------------------------------------------

    def init(self) -> None:
        self.sockets.mkdir()
        if self._user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            self._initdb,
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            timeout=INITDB_TIMEOUT,
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockets}'",
            "max_connections": str(MAX_CONNECTIONS),
            "shared_buffers": "'64MB'",
            # Test data: durability across a power cut is not needed, speed is. Commits still
            # reach the OS before they are acknowledged (synchronous_commit stays on), so a
            # killed server (stop "immediate") loses nothing it acknowledged, like a real one.
            "fsync": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        conf = self.data / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write("\n# muxd throwaway server\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the server; returns once it accepts."""
        self._run(
            self._pg_ctl, "start", "-w", "-D", str(self.data), "-l", str(self.log),
            timeout=PG_CTL_TIMEOUT,
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected cleanly) or ``immediate`` (as if
        it crashed: no shutdown checkpoint, clients see their sockets die)."""
        if not self.running:
            return
        self.resume()
        self._run(
            self._pg_ctl, "stop", "-w", "-m", mode, "-D", str(self.data),
            timeout=PG_CTL_TIMEOUT,
        )  # fmt: skip
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def pids(self) -> list[int]:
        """The postmaster and every process it started (empty when stopped)."""
        pid_file = self.data / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return []
        out = [postmaster]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ")".
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(postmaster):
                out.append(int(entry.name))
        return out

    def pause(self) -> None:
        """Freeze every server process (SIGSTOP): connections stay open, nothing answers."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server (if running) and remove the directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float) -> None:
        user = self._user
        try:
            result = subprocess.run(
                argv,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
                env={**os.environ, "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{Path(argv[0]).name} {argv[1]}: no answer in {timeout} s") from exc
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip()[-2000:]}\n{log}"
            )
