"""A real, throw-away PostgreSQL server for the tests: 127.0.0.1:25432, superuser `postgres` with a password.

tests/platform/simulations/postgres-exec.yaml sends `kubectl exec ... -c postgres -- psql ...` into a
simulated CloudNativePG instance to this address, so the same server serves the tests of direct
connections and of connections through the Kubernetes API.

    with running_postgres() as server:         # or, in a test module: postgres = postgres_fixture()
        server.sql("SELECT 1")

The server runs as the `postgres` OS user when the tests run as root (PostgreSQL refuses root), from a
temporary directory that it owns and that is removed when the server stops. Every TCP connection must
authenticate with SCRAM-SHA-256, so a wrong password really fails. Nested users (a unit and an
integration test module in one pytest session) share one server; the last one out stops it.

The port is $HOMELAB_FLYTE_PG_PORT (25432 by default; the platform reads the same variable), so test
sessions that share it take turns: a lock file next to the temporary
directories is held while a server runs, and another session waits for it (up to
$HOMELAB_FLYTE_PG_WAIT seconds, 1800 by default) before it starts its own.

Without the server binaries the fixture skips, naming what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
# The kwok exec simulation points libpq at the same port (tests/platform/platform.py reads this too).
PORT = int(os.environ.get("HOMELAB_FLYTE_PG_PORT", "25432"))
SUPERUSER = "postgres"
PREFERRED_VERSION = "15"


class PostgresUnavailable(Exception):
    """The server cannot run on this machine (no binaries, no postgres user): a reason to skip."""


def find_bin_dir() -> Path:
    """The directory of initdb/pg_ctl/postgres: $HOMELAB_FLYTE_PG_BIN, Debian's PostgreSQL 15, any other."""
    candidates = [os.environ.get("HOMELAB_FLYTE_PG_BIN", ""), f"/usr/lib/postgresql/{PREFERRED_VERSION}/bin",
                  *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in filter(None, candidates):
        if all((Path(candidate) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
                              "/usr/lib/postgresql/*/bin: install Debian's postgresql package "
                              "(scripts/bootstrap does) or set HOMELAB_FLYTE_PG_BIN")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


class PostgresServer:
    """One PostgreSQL instance in a temporary directory. start() and stop(), or use running_postgres()."""

    def __init__(self, port: int = PORT, exec_passfile: bool = False):
        self.host, self.port, self.user = HOST, port, SUPERUSER
        self.password = secrets.token_urlsafe(18)
        self.exec_passfile = exec_passfile
        self.bin_dir: Path | None = None
        self.root: Path | None = None
        self._passfile_written = False
        self._lock = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}{self.log_tail()}")

    def start(self) -> PostgresServer:
        self.bin_dir = find_bin_dir()
        if os.geteuid() == 0:
            try:
                import pwd
                server_user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no `postgres` OS user to run PostgreSQL as") from None
            if not shutil.which("runuser"):
                raise PostgresUnavailable("running as root, and runuser (util-linux) is missing to drop to `postgres`")
        wait = float(os.environ.get("HOMELAB_FLYTE_PG_WAIT", "1800"))
        self._take_turn(wait)
        self._wait_for_port(wait)
        self.root = Path(tempfile.mkdtemp(prefix="homelab-flyte-pg-"))
        try:
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                os.chown(self.root, server_user.pw_uid, server_user.pw_gid)
                os.chown(pwfile, server_user.pw_uid, server_user.pw_gid)
            os.chmod(self.root, 0o700)
            self._run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                       "--no-sync"], "initdb")
            pwfile.unlink()
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.root}'\n"
                           "password_encryption = 'scram-sha-256'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "max_connections = 50\nshared_buffers = 32MB\n")
            # Only these two ways in: the server's own socket without a password (nothing here uses
            # it), and TCP on loopback with the password.
            (self.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                       "-o", "-c logging_collector=off", "start"], "pg_ctl start")
            self._wait_ready(60)
            if self.exec_passfile:
                self._write_passfile()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_turn(self, timeout: float) -> None:
        """Hold the machine-wide lock of this port, waiting while another test session holds it."""
        self._lock = open(Path(tempfile.gettempdir()) / f"homelab-flyte-pg-{self.port}.lock", "a+", encoding="utf-8")
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._release_turn()
                    raise RuntimeError(f"another test session kept the test PostgreSQL on {self.host}:{self.port} "
                                       f"for more than {timeout:.0f}s (HOMELAB_FLYTE_PG_WAIT)") from None
                if not told:
                    sys.__stderr__.write(f"[tests/postgres.py] waiting for another test session's PostgreSQL on "
                                         f"{self.host}:{self.port} to stop\n")
                    told = True
                time.sleep(1)

    def _wait_for_port(self, timeout: float) -> None:
        """With the lock held the port should be free; something that predates the lock may still hold it."""
        deadline, told = time.monotonic() + timeout, False
        while port_in_use(self.host, self.port):
            leftovers = sorted(path for path in glob.glob(str(Path(tempfile.gettempdir()) / "homelab-flyte-pg-*"))
                               if not path.endswith(".lock"))
            holder = (f"a PostgreSQL in {', '.join(leftovers)} (a leftover? stop it with "
                      f"runuser -u postgres -- pg_ctl -D <dir>/data stop)" if leftovers else "another program")
            if time.monotonic() > deadline:
                self._release_turn()
                raise RuntimeError(f"{self.host}:{self.port} stayed in use for {timeout:.0f}s, by {holder}.")
            if not told:
                sys.__stderr__.write(f"[tests/postgres.py] {self.host}:{self.port} is in use by {holder}; waiting\n")
                told = True
            time.sleep(1)

    def _release_turn(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def _wait_ready(self, timeout: float) -> None:
        import psycopg
        deadline, error = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                with self.connect():
                    return
            except psycopg.OperationalError as failure:
                error = failure
                time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not accept connections on {self.host}:{self.port} within {timeout:.0f}s: "
                           f"{error}{self.log_tail()}")

    def stop(self) -> None:
        self._restore_passfile()
        if self.root is not None:
            if (self.data / "postmaster.pid").exists():
                subprocess.run(self._as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                                     "-w", "-t", "30", "stop"]), capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self._release_turn()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n--- server log ---\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return ""

    # -- the simulated container's login -------------------------------------------------------------

    @property
    def passfile(self) -> Path:
        """Where tests/platform/simulations/postgres-exec.yaml points libpq's PGPASSFILE."""
        return Path(f"/tmp/homelab-flyte-pg-{self.port}.pgpass")

    def _write_passfile(self) -> None:
        """Let psql started by kwok's exec simulation log in as `postgres` without a password argument.

        In a CloudNativePG pod, psql reaches the server over the local socket with peer
        authentication; the simulation can only send it to this TCP address, where the password is
        required, so it points libpq at this file. stop() removes it.
        """
        self.passfile.write_text("")
        self.passfile.chmod(0o600)
        self.passfile.write_text(f"{self.host}:{self.port}:*:{self.user}:{self.password}\n")
        self._passfile_written = True

    def _restore_passfile(self) -> None:
        if self._passfile_written:
            self.passfile.unlink(missing_ok=True)
            self._passfile_written = False

    # -- helpers for tests ---------------------------------------------------------------------------

    def conninfo(self, **overrides) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "dbname": "postgres", "connect_timeout": 5, **overrides}

    def connect(self, **overrides):
        """A psycopg connection (autocommit), as the superuser to database postgres unless overridden."""
        import psycopg
        return psycopg.connect(**self.conninfo(**overrides), autocommit=True)

    def sql(self, query, params=None, dbname: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser; the rows it returns (empty for commands)."""
        with self.connect(dbname=dbname) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def drop(self, databases=(), roles=()) -> None:
        """Drop databases (forcibly) and roles if they exist: a test's cleanup."""
        from psycopg import sql
        for name in databases:
            self.sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for name in roles:
            self.sql(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def databases(self) -> set[str]:
        return {row[0] for row in self.sql("SELECT datname FROM pg_database WHERE NOT datistemplate")}

    def roles(self) -> set[str]:
        return {row[0] for row in self.sql("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'")}


_shared: dict = {"server": None, "users": 0}


@contextlib.contextmanager
def running_postgres(exec_passfile: bool = False):
    """The test server, started on first use and stopped when its last user leaves."""
    if _shared["server"] is None:
        _shared["server"] = PostgresServer(exec_passfile=exec_passfile).start()
    elif exec_passfile and not _shared["server"].exec_passfile:
        _shared["server"].exec_passfile = True
        _shared["server"]._write_passfile()
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            server, _shared["server"] = _shared["server"], None
            server.stop()


def postgres_fixture(scope: str = "session", exec_passfile: bool = False):
    """A pytest fixture of the running test server; assign it in a test module: `postgres = postgres_fixture()`.

    exec_passfile: also let psql run by the platform's exec simulation log in (see _write_passfile).
    """
    import pytest

    @pytest.fixture(scope=scope)
    def postgres():
        try:
            manager = running_postgres(exec_passfile=exec_passfile)
            server = manager.__enter__()
        except PostgresUnavailable as reason:
            pytest.skip(f"no test PostgreSQL: {reason}")
        try:
            yield server
        finally:
            manager.__exit__(None, None, None)

    return postgres
