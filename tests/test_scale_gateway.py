"""Gateways that scale out (issue 9): several ``bastion serve`` processes, or one with ``--workers N``, share keys,
limits, budgets and the audit chain through PostgreSQL and Redis.

The slow tests need both servers: ``scripts/scale_test.sh`` starts them (``scripts/services.sh``) and sets
``BASTION_TEST_DATABASE_URL`` and ``BASTION_TEST_LIMITS_URL``; without those they are skipped. They check that
one key's traffic through two gateways (or two workers) never exceeds its rate in any window, spends its budget
exactly once, and leaves an audit chain that verifies, one record per answered request.

The fast tests check that ``--workers`` refuses what would count each worker alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from bastion.storage.database import open_database
from bastion.storage.tables import AuditRecordRow
from gateway_support import POLICY, infer_body, make_key

BASTION = str(Path(sys.executable).with_name("bastion"))
DATABASE_URL = os.environ.get("BASTION_TEST_DATABASE_URL")
LIMITS_URL = os.environ.get("BASTION_TEST_LIMITS_URL")
needs_services = pytest.mark.skipif(
    not (DATABASE_URL and LIMITS_URL),
    reason="needs PostgreSQL and Redis: set BASTION_TEST_DATABASE_URL and BASTION_TEST_LIMITS_URL "
           "(scripts/scale_test.sh starts both with scripts/services.sh and sets them)")
RATE, PERIOD, BUDGET = 5, 1.0, 25  # the shared key: 5 requests a second, 25 instances a day


def _robustness():
    """tests/test_gateway_robustness.py, for its load helpers (imported only by the slow tests: it takes seconds)."""
    import test_gateway_robustness

    return test_gateway_robustness


# --- fast: refusals ----------------------------------------------------------------------------------------


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("BASTION_DATABASE_URL", "BASTION_LIMITS_URL")}
    return subprocess.run([BASTION, "serve", "--model", "bastion.models.zoo:digits_cnn", *args],
                          env={**environment, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **env},
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_zero_workers(tmp_path):
    result = _serve("--workers", "0", "--home", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--workers'" in result.stderr, result.stderr
    assert "greater than or equal to 1" in result.stderr or "x>=1" in result.stderr, result.stderr


def test_serve_refuses_several_workers_with_limits_in_memory(tmp_path):
    result = _serve("--workers", "2", "--home", str(tmp_path), BASTION_LIMITS_URL="memory://")
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "--workers 2" in message and "BASTION_LIMITS_URL=redis://" in message, message
    assert "Traceback" not in result.stderr


def test_serve_refuses_several_workers_with_an_in_memory_database(tmp_path):
    result = _serve("--workers", "3", "--home", str(tmp_path), BASTION_LIMITS_URL="redis://127.0.0.1:1/0",
                    BASTION_DATABASE_URL="sqlite://")
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "--workers 3" in message and "BASTION_DATABASE_URL=postgresql" in message, message
    assert "Traceback" not in result.stderr


def test_serve_warns_of_a_factory_model_without_weights(tmp_path):
    result = _serve("--home", str(tmp_path), "--policy", str(tmp_path / "missing.yaml"))  # stops at the policy
    assert result.returncode == 2, result.stderr
    assert "starts from random weights" in " ".join(result.stderr.split()), result.stderr


def test_serve_refuses_a_limits_store_that_does_not_answer(tmp_path):
    result = _serve("--workers", "2", "--home", str(tmp_path), BASTION_LIMITS_URL="redis://:hunter2@127.0.0.1:1/0")
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "hunter2" not in message and "***" in message, message  # the password is masked
    try:
        import redis  # noqa: F401 - the driver: without it the URL cannot be used at all
    except ImportError:
        assert "cannot use" in message, message
    else:
        assert "does not answer" in message, message


# --- slow: PostgreSQL and Redis ----------------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """The test's database and limits URLs, set for this process too (so ``make_key`` writes to PostgreSQL)."""
    monkeypatch.setenv("BASTION_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("BASTION_LIMITS_URL", LIMITS_URL)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return policy


def _gateway(home: Path, weights: str, policy: Path, *extra: str):
    """A ``GatewayProcess`` (tests/test_gateway_robustness.py) on the shared database and limits, with ``extra``
    arguments for ``bastion serve``."""
    robust = _robustness()

    class SharedGateway(robust.GatewayProcess):
        def start(self):
            port = robust._free_port()
            self.url = f"http://127.0.0.1:{port}"
            home.mkdir(parents=True, exist_ok=True)
            log = open(self.home / "gateway.log", "ab")  # noqa: SIM115 - the child holds it until it ends
            self.process = subprocess.Popen(
                [BASTION, "serve", "--model", robust.MODEL, "--weights", self.weights, "--policy", str(self.policy),
                 "--name", "digits", "--home", str(self.home), "--port", str(port), *extra],
                env=robust._environment(BASTION_DATABASE_URL=DATABASE_URL, BASTION_LIMITS_URL=LIMITS_URL),
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + 240
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"bastion serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
                try:
                    if robust.httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                        return self
                except robust.httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"bastion serve did not become ready:\n{self.log()[-3000:]}")
                time.sleep(0.2)

    home.mkdir(parents=True, exist_ok=True)
    return SharedGateway(home, weights, policy)


def _timed_requests(digits_arrays, seconds: float, keys: list[str], *, invalid_every: int = 40):
    """(key name, body) pairs dealt round-robin to ``keys`` until ``seconds`` have passed; one in ``invalid_every``
    is out of range (a logged 422)."""
    x, _ = digits_arrays
    pool = x[1200:]
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        image = pool[index % len(pool)][None]
        if index % invalid_every == invalid_every - 1:
            image = image + 2.0
        yield keys[index % len(keys)], infer_body(image)
        index += 1


def _last_seq() -> int:
    with open_database(DATABASE_URL) as database, database.sessions() as session:
        return session.scalar(select(func.coalesce(func.max(AuditRecordRow.seq), 0)))


def _rows_after(seq: int) -> list[tuple[str, str, object, int]]:
    """``(request_id, key_id, time, status)`` of the audit records after ``seq``, in chain order."""
    with open_database(DATABASE_URL) as database, database.sessions() as session:
        return [tuple(row) for row in session.execute(
            select(AuditRecordRow.request_id, AuditRecordRow.key_id, AuditRecordRow.time, AuditRecordRow.status)
            .where(AuditRecordRow.seq > seq).order_by(AuditRecordRow.seq))]


def _check_shared_traffic(answers_by_gateway: list[list], rows, ids: dict[str, str], home: Path) -> dict:
    """The checks of both slow tests on the answers each gateway gave and the audit records written meanwhile."""
    robust = _robustness()
    answers = [a for answers in answers_by_gateway for a in answers]
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 202, 422, 429}, [a for a in answers if a.status not in (200, 202, 422, 429)][:5]
    # (c) one audit record per answered request, and the shared chain verifies.
    logged = [a for a in answers if a.request_id is not None]
    assert all(a.status in robust.LOGGED for a in logged)
    assert len(rows) == len(logged)
    assert {row[0] for row in rows} == {a.request_id for a in logged}
    verify = subprocess.run([BASTION, "audit", "verify", "--home", str(home)], capture_output=True, text=True,
                            timeout=300, env=robust._environment(BASTION_DATABASE_URL=DATABASE_URL))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    total = _last_seq()
    assert f"{total} records" in verify.stdout, verify.stdout
    # (a) the shared key: refused over its rate, and never more than RATE admitted in any window of PERIOD.
    shared = [a for a in answers if a.key == "shared"]
    assert any(a.status == 429 and "key rate" in a.error for a in shared)
    times = [robust._seconds(row[2].isoformat() if hasattr(row[2], "isoformat") else row[2])
             for row in rows if row[1] == ids["shared"]]
    tightest = robust._tightest_window(times, RATE)
    # A record's time is its admission, stamped just after the Redis round trip that admitted it: allow a tenth.
    assert tightest >= PERIOD * 0.9, tightest
    # (b) its budget (one instance a request) spent exactly once across the gateways, then refused.
    assert len(times) == BUDGET
    assert sum(1 for a in shared if a.status != 429) == BUDGET
    assert any(a.status == 429 and "key budget" in a.error for a in shared)
    return {"statuses": dict(statuses), "records": len(rows), "chain": total, "tightest": tightest,
            "shared_admitted_by_gateway": [sum(1 for a in g if a.key == "shared" and a.status != 429)
                                           for g in answers_by_gateway],
            "verify": verify.stdout.strip()}


@pytest.mark.slow
@needs_services
def test_two_gateways_share_one_keys_limits_budget_and_audit_chain(shared, tmp_path, digits_weights, digits_arrays):
    robust = _robustness()
    home_a, home_b = tmp_path / "host-a", tmp_path / "host-b"
    home_a.mkdir()
    ids, tokens = {}, {}
    for name, options in (("shared", {"rate": f"{RATE}/second", "budget": f"{BUDGET}/day"}), ("plain", {})):
        ids[name], tokens[name] = make_key(home_a, name=name, **options)
    start = _last_seq()
    # One after the other: the first creates the schema and stores the policy, which two fresh gateways racing
    # on an empty database could both try to do.
    with _gateway(home_a, digits_weights, shared) as a, _gateway(home_b, digits_weights, shared) as b:
        async def both() -> list[list]:
            return list(await asyncio.gather(
                *(robust._load(gateway.url, tokens, _timed_requests(digits_arrays, 9.0, ["shared", "plain"]),
                               concurrency=6) for gateway in (a, b))))

        started = time.perf_counter()
        answers_by_gateway = asyncio.run(both())
        seconds = time.perf_counter() - started
        assert a.stop(), a.log()[-3000:]
        assert b.stop(), b.log()[-3000:]
    result = _check_shared_traffic(answers_by_gateway, _rows_after(start), ids, home_a)
    print(f"\ntwo gateways, {sum(map(len, answers_by_gateway))} requests in {seconds:.1f} s: {result}")
    # Both gateways admitted some of the shared key's requests: the limits held across them, not inside one.
    assert all(n > 0 for n in result["shared_admitted_by_gateway"]), result


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.slow
@needs_services
def test_workers_on_one_port_share_one_keys_limits_budget_and_audit_chain(shared, tmp_path, digits_weights,
                                                                            digits_arrays):
    robust = _robustness()
    home = tmp_path / "host"
    home.mkdir()
    ids, tokens = {}, {}
    for name, options in (("shared", {"rate": f"{RATE}/second", "budget": f"{BUDGET}/day"}), ("plain", {})):
        ids[name], tokens[name] = make_key(home, name=name, **options)
    start = _last_seq()
    with _gateway(home, digits_weights, shared, "--workers", "2") as gateway:
        assert len(_children(gateway.process.pid)) >= 2
        answers = asyncio.run(robust._load(gateway.url, tokens,
                                           _timed_requests(digits_arrays, 9.0, ["shared", "plain"]), concurrency=8))
        assert gateway.stop(), gateway.log()[-3000:]
    assert gateway.log().count('"message":"gateway ready"') == 2  # each worker built its own gateway
    result = _check_shared_traffic([answers], _rows_after(start), ids, home)
    print(f"\n--workers 2, {len(answers)} requests: {result}")


@needs_services
@pytest.mark.slow
def test_processes_opening_an_empty_database_at_once_create_its_schema_once():
    """Gateways on several hosts starting together: each opens (and would migrate) the database at the same time."""
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(DATABASE_URL)
    name = f"bastion_race_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    opener = ("import sys; from bastion.storage.database import open_database; "
              "open_database(sys.argv[1]).engine.dispose(); print('opened')")
    try:
        children = [subprocess.Popen([sys.executable, "-c", opener, url], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs = [child.communicate(timeout=180) for child in children]
        assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in outputs]
        assert all(out.strip() == "opened" for out, _ in outputs)
        with open_database(url) as database, database.sessions() as session:
            assert session.scalar(select(func.count()).select_from(AuditRecordRow)) == 0
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
