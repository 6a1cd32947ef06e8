"""The realstack harness as seen from Python: state dir, up/down, SQL.

Used by the fixtures in ``conftest.py`` and by the test modules.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "realstack"
UP_TIMEOUT = 780.0
"""Seconds up.sh may take (a cold build takes 60-90 s)."""

# Variables of the caller's environment that would change what
# panda-client sends; env.sh of the harness decides them instead.
_CLIENT_VARS_TO_CLEAR = (
    "IDDS_HOST",
    "PANDA_AUTH",
    "PANDA_AUTH_VO",
    "PANDA_AUTH_ID_TOKEN",
    "OIDC_AUTH_TOKEN_FILE",
    "OIDC_AUTH_ID_TOKEN",
    "OIDC_AUTH_VO",
    "PANDACACHE_URL",
)

# Run by the realstack venv's Python (it has psycopg2): one SQL query
# against the iDDS database, rows printed as JSON.
_SQL_SCRIPT = """
import json, sys, psycopg2
dsn, schema, query, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with psycopg2.connect(dsn, options=f"-c search_path={schema}") as conn, conn.cursor() as cur:
    cur.execute(query, params or None)
    rows = cur.fetchall() if cur.description else []
print(json.dumps([list(r) for r in rows], default=str))
"""

_TRUNCATE = """
DO $$ DECLARE t text; BEGIN
  SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO t
    FROM pg_tables WHERE schemaname = current_schema();
  IF t IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' RESTART IDENTITY CASCADE'; END IF;
END $$;
"""


def _required() -> bool:
    return os.environ.get("REALSTACK_REQUIRED", "") == "1"


def unavailable(reason: str) -> None:
    """Skip (with REALSTACK_REQUIRED=1: fail) for a missing prerequisite."""
    if _required():
        pytest.fail(f"realstack tier required but unavailable: {reason}", pytrace=False)
    pytest.skip(f"realstack: {reason}")


def find_python312() -> str | None:
    """The base Python 3.12 the harness builds its venvs with."""
    candidates = [os.environ.get("REALSTACK_PYTHON_BIN", "")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python"), reverse=True)
    # pyenv may be installed but not on PATH (e.g. a non-login CI shell)
    for root in (os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")):
        if root:
            candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python"), reverse=True)
    candidates.append(shutil.which("python3.12") or "")
    for cand in filter(None, candidates):
        probe = "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 12))"
        if os.access(cand, os.X_OK) and subprocess.run([cand, "-c", probe], check=False).returncode == 0:
            return cand
    return None


def find_pg_bin() -> str | None:
    """A PostgreSQL server bin directory (pg_ctl, initdb, psql)."""
    dirs = [os.environ.get("REALSTACK_PG_BIN", "")]
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in filter(None, dirs):
        if all(os.access(os.path.join(d, exe), os.X_OK) for exe in ("pg_ctl", "initdb", "psql")):
            return d
    return None


def _missing_tools() -> list[str]:
    missing = [t for t in ("bash", "setsid", "flock") if shutil.which(t) is None]
    if os.geteuid() == 0 and not (shutil.which("runuser") or shutil.which("su")):
        missing.append("runuser or su")
    return missing


def prerequisite_problem() -> str | None:
    """Why the stack cannot be built here, or `None`."""
    if find_pg_bin() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql-15, or set REALSTACK_PG_BIN)"
    if find_python312() is None:
        return "no Python 3.12 with venv/ensurepip (pyenv, python3.12, or REALSTACK_PYTHON_BIN)"
    if _missing_tools():
        return f"missing tools: {', '.join(_missing_tools())}"
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", "-u", os.environ.get("REALSTACK_PG_USER", "postgres")],
                           check=True, capture_output=True)  # fmt: skip
        except subprocess.CalledProcessError:
            return "running as root but there is no OS user 'postgres' to own the cluster"
    return None


def default_state_dir() -> Path:
    """``$REALSTACK_STATE_DIR``, else /tmp/realstack-<user>-<hash>.

    The hash covers the harness's requirement and constraint files and
    the base Python, so a changed pin gets a fresh state directory.
    """
    explicit = os.environ.get("REALSTACK_STATE_DIR")
    if explicit:
        return Path(explicit)
    digest = hashlib.sha256()
    for path in sorted((HARNESS / "lib").glob("*.txt")) + [HARNESS / "lib" / "build_venv.sh"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update((find_python312() or "").encode())
    return Path(f"/tmp/realstack-{getpass.getuser()}-{digest.hexdigest()[:12]}")


def built(state_dir: Path) -> bool:
    marks = [
        "venv-idds/.realstack-stamp",
        "venv-panda/.realstack-stamp",
        "src/panda_server-1.0.4/.realstack-ok",
    ]
    return all((state_dir / m).exists() for m in marks)


def index_reachable() -> bool:
    index = (
        os.environ.get("REALSTACK_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    )
    url = urllib.parse.urlsplit(index)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=10):
            return True
    except OSError:
        return False


def parse_env_sh(path: Path) -> dict[str, str]:
    """``export NAME='value'`` lines of the harness's env.sh."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("export "):
            continue
        name, _, value = line[len("export ") :].partition("=")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name] = value
    return values


def run_harness(script: str, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a harness script (up.sh/down.sh/status.sh), output captured."""
    env = dict(os.environ)
    # pip's cache goes into the state dir too: nothing outside it
    if args:
        env.setdefault("PIP_CACHE_DIR", os.path.join(args[-1], "pip-cache"))
    env.setdefault("REALSTACK_PYTHON_BIN", find_python312() or "")
    return subprocess.run(
        ["bash", str(HARNESS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class RealStack:
    """The running stack, as seen by a client.

    Attributes
    ----------
    state_dir : `pathlib.Path`
        The harness state directory.
    env : `dict` [`str`, `str`]
        Everything env.sh exports.
    timings : `dict` [`str`, `float`]
        Seconds spent in up.sh calls, by label.
    """

    state_dir: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def idds_server(self) -> str:
        """Value of the plugin's ``iddsServer`` key."""
        return self.env["REALSTACK_IDDS_SERVER"]

    @property
    def panda_url(self) -> str:
        return self.env["PANDA_URL_SSL"]

    @property
    def relay_url(self) -> str:
        return self.env["REALSTACK_RELAY_URL"]

    @property
    def pg_dsn(self) -> str:
        return self.env["REALSTACK_PG_DSN"]

    @property
    def schema(self) -> str:
        return self.env["REALSTACK_IDDS_DB_SCHEMA"]

    @property
    def python(self) -> str:
        """The realstack venv's Python (panda-client, idds, psycopg2)."""
        return self.env["REALSTACK_PYTHON"]

    def client_env(self) -> dict[str, str]:
        """The variables panda-client reads, for this stack."""
        return {k: v for k, v in self.env.items() if not k.startswith("REALSTACK_")}

    def up(self, *flags: str, label: str = "up") -> None:
        """Run up.sh (idempotent); fail with its output if it fails."""
        start = time.monotonic()
        proc = run_harness("up.sh", *flags, str(self.state_dir))
        self.timings[label] = time.monotonic() - start
        if proc.returncode != 0:
            pytest.fail(
                f"realstack/up.sh {' '.join(flags)} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False
            )
        self.env = parse_env_sh(self.state_dir / "env.sh")

    def sql(self, query: str, params: list[Any] | None = None) -> list[list[Any]]:
        """Run one query in the iDDS schema; rows as lists."""
        proc = subprocess.run(
            [self.python, "-c", _SQL_SCRIPT, self.pg_dsn, self.schema, query, json.dumps(params or [])],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"SQL failed: {query}\n{proc.stderr}")
        return json.loads(proc.stdout)

    def truncate(self) -> None:
        """Empty every iDDS table (ids restart at 1)."""
        self.sql(_TRUNCATE)


def patch_client_env(mp: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Apply a client environment, also to an already imported panda-client.

    panda-client reads ``PANDA_URL``/``PANDA_URL_SSL`` once, at import of
    ``pandaclient.Client``; the module globals are updated too when it is
    already imported.
    """
    for name in _CLIENT_VARS_TO_CLEAR:
        mp.delenv(name, raising=False)
    for name, value in values.items():
        mp.setenv(name, value)
    client = sys.modules.get("pandaclient.Client")
    if client is not None:
        mp.setattr(client, "baseURL", values["PANDA_URL"])
        mp.setattr(client, "baseURLSSL", values["PANDA_URL_SSL"])
        if "PANDACACHE_URL" in values:
            mp.setattr(client, "baseURLCSRVSSL", values["PANDACACHE_URL"])


def start_stack() -> RealStack:
    """Check the prerequisites, then build (if needed) and start the stack."""
    problem = prerequisite_problem()
    if problem:
        unavailable(problem)
    state_dir = default_state_dir()
    if not built(state_dir) and not index_reachable():
        unavailable(f"{state_dir} is not built and the package index is unreachable")
    stack = RealStack(state_dir, {})
    label = "warm start" if built(state_dir) else "cold install + start"
    stack.up("--no-agents", label=label)
    return stack


@dataclass
class LocalService:
    """The local PanDA service (``panda-local``) on a free port."""

    state_dir: Path
    env: dict[str, str]


@dataclass
class Backend:
    """One relay the wire-level tests talk to.

    Attributes
    ----------
    name : `str`
        ``"real"`` or ``"local"``.
    env : `dict` [`str`, `str`]
        The client environment for it.
    idds_server : `str` or `None`
        ``idds_host`` for ``get_api`` (the plugin's ``iddsServer``).
    """

    name: str
    env: dict[str, str]
    idds_server: str | None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Point panda-client at this backend for the duration."""
        mp = pytest.MonkeyPatch()
        try:
            patch_client_env(mp, self.env)
            yield
        finally:
            mp.undo()

    def api(self) -> Any:
        """panda-client's iDDS API, configured as the plugin does it."""
        import idds.common.utils as idds_utils
        import pandaclient.idds_api

        return pandaclient.idds_api.get_api(
            idds_utils.json_dumps, idds_host=self.idds_server, compress=True, manager=True
        )


def real_backend(stack: RealStack) -> Backend:
    return Backend("real", stack.client_env(), stack.idds_server)


def local_backend(service: LocalService) -> Backend:
    return Backend("local", dict(service.env), None)
