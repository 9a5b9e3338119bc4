"""A real, throw-away PostgreSQL server for the tests: 127.0.0.1:25432, superuser `postgres` with a password.

tests/platform/simulations/postgres-exec.yaml sends `kubectl exec ... -c postgres -- psql ...` into a
simulated CloudNativePG instance to this server's Unix socket, so the same server serves the tests of
direct connections and of connections through the Kubernetes API.

It authenticates as a CloudNativePG instance does (pg_hba.conf and pg_ident.conf as the instance
manager writes them, cloudnative-pg v1.30 pkg/postgres/configuration.go): over the socket by `peer`
with the ident map `local`, which admits only the database user `postgres`; over TCP by
SCRAM-SHA-256 password. So `psql -U flyte` through the socket fails here as on a real cluster.

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
# Where the server's Unix socket lives, a fixed path per port: the kwok exec simulation
# (tests/platform/simulations/postgres-exec.yaml) and the operator simulations connect there, as
# libpq in a CloudNativePG container reaches the instance at PGHOST=/controller/run.
SOCKET_DIR_TEMPLATE = "/tmp/homelab-flyte-pg-{port}.socket"


def socket_dir(port: int = PORT) -> Path:
    return Path(SOCKET_DIR_TEMPLATE.format(port=port))


def platform_os_user() -> str:
    """The OS user that runs the tests and the platform, hence kwok's exec processes (root in CI)."""
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def hba_rules() -> str:
    """pg_hba.conf: the fixed and default rules of a CloudNativePG instance (no user-defined rules).

    CloudNativePG also writes three `hostssl ... cert` rules (streaming_replica, the pooler); this
    server has no TLS, so PostgreSQL could never match them, and they are left out.
    """
    return ("local all cnpg_metrics_exporter peer map=cnpg_metrics_exporter\n"
            "local all all peer map=local\n"
            "host all all all scram-sha-256\n")


def ident_rules(os_user: str) -> str:
    """pg_ident.conf: CloudNativePG's fixed maps, with os_user where the instance has `postgres`.

    In an instance pod every process, psql started by `kubectl exec` included, runs as the OS user
    `postgres`, which the map `local` lets in as the database user postgres and nobody else. Here
    kwok runs the exec's psql as the OS user that runs the platform (root in CI; switching to
    another user would need root everywhere), so that user takes the container user's place in the
    map: it is admitted as postgres over the socket, and as no other database user.
    """
    return (f"local {os_user} postgres\n"
            "cnpg_streaming_replica streaming_replica streaming_replica\n"
            "cnpg_pooler_pgbouncer cnpg_pooler_pgbouncer cnpg_pooler_pgbouncer\n"
            f"cnpg_metrics_exporter {os_user} cnpg_metrics_exporter\n")


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

    def __init__(self, port: int = PORT):
        self.host, self.port, self.user = HOST, port, SUPERUSER
        self.password = secrets.token_urlsafe(18)
        self.bin_dir: Path | None = None
        self.root: Path | None = None
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
            # Nothing else can use this port's socket directory while the lock is held and the port is free.
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir.mkdir(mode=0o700)
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                for path in (self.root, pwfile, self.socket_dir):
                    os.chown(path, server_user.pw_uid, server_user.pw_gid)
            os.chmod(self.root, 0o700)
            self._run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                       "--no-sync"], "initdb")
            pwfile.unlink()
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.socket_dir}'\n"
                           "password_encryption = 'scram-sha-256'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "max_connections = 50\nshared_buffers = 32MB\n")
            # The ways in of a CloudNativePG instance: the socket by peer (postgres only), TCP by password.
            (self.data / "pg_hba.conf").write_text(hba_rules())
            (self.data / "pg_ident.conf").write_text(ident_rules(platform_os_user()))
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                       "-o", "-c logging_collector=off", "start"], "pg_ctl start")
            self._wait_ready(60)
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
        if self.root is not None:
            if (self.data / "postmaster.pid").exists():
                subprocess.run(self._as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                                     "-w", "-t", "30", "stop"]), capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.root = None
        self._release_turn()

    @property
    def socket_dir(self) -> Path:
        return socket_dir(self.port)

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
def running_postgres():
    """The test server, started on first use and stopped when its last user leaves."""
    if _shared["server"] is None:
        _shared["server"] = PostgresServer().start()
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            server, _shared["server"] = _shared["server"], None
            server.stop()


def postgres_fixture(scope: str = "session"):
    """A pytest fixture of the running test server; assign it in a test module: `postgres = postgres_fixture()`."""
    import pytest

    @pytest.fixture(scope=scope)
    def postgres():
        try:
            manager = running_postgres()
            server = manager.__enter__()
        except PostgresUnavailable as reason:
            pytest.skip(f"no test PostgreSQL: {reason}")
        try:
            yield server
        finally:
            manager.__exit__(None, None, None)

    return postgres
