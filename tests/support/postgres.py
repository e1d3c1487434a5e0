"""A PostgreSQL server of the test's own, for tests that stop or restart the database.

Never the machine's shared server: initdb in a temporary directory, another
port, fsync off; stopped and removed afterwards, pass or fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return Path(found[-1]).parent


@dataclass
class PrivatePostgres:
    bindir: Path
    data: Path
    socket_dir: Path
    port: int
    log: Path

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options]
        _as_postgres([*pg_ctl, "-l", str(self.log), "-w", "-t", "60", *args])

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def createdb(self, name: str) -> None:
        createdb = str(self.bindir / "createdb")
        subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name], check=True
        )


def _as_postgres(command: list[str]) -> None:
    # initdb and pg_ctl refuse to run as root.
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="sdr-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PrivatePostgres(
        bindir=_bindir(),
        data=root / "data",
        socket_dir=root,
        port=free_port(),
        log=root / "server.log",
    )
    try:
        initdb = [str(server.bindir / "initdb"), "-D", str(server.data), "-A", "trust"]
        _as_postgres([*initdb, "-U", "postgres", "--no-sync", "-E", "UTF8"])
        server.start()
        yield server
    finally:
        with suppress(subprocess.CalledProcessError):  # already stopped
            _as_postgres(
                [str(server.bindir / "pg_ctl"), "-D", str(server.data), "stop", "-m", "immediate"]
            )
        shutil.rmtree(root, ignore_errors=True)
