"""The leadership lock of a bank's processes (its resolver): one holder at a time, and a
holder that dies by kill -9 (or loses its database session) frees the role for another.

The file lock (SQLite) and the PostgreSQL advisory lock are held here by a separate Python
process, so that its death is a real process's death."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from bank_node.storage.leadership import FileLeadership, PostgresLeadership
from tests.support import wait_until

pytestmark = pytest.mark.integration

def holder_process(make: str) -> subprocess.Popen:
    """A Python process that takes the role (``make``: the expression of a Leadership), says
    "held" and sleeps until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from bank_node.storage.leadership import FileLeadership, PostgresLeadership
        lead = {make}
        assert lead.try_acquire()
        print("held", flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def ledger_url(pg_schemas):
    """A PostgreSQL ledger's URL: a schema of its own in the session's test database."""
    schema = pg_schemas.take(fresh=True)
    yield pg_schemas.url(schema)
    pg_schemas.give_back([schema])


@pytest.fixture(params=["file", "postgres"])
def roles(request, tmp_path):
    """(a new Leadership of one role, its expression for another process)."""
    if request.param == "file":
        path = tmp_path / "ledger.sqlite3.resolver.lock"
        return (lambda: FileLeadership(path)), f"FileLeadership({str(path)!r})"
    url = request.getfixturevalue("ledger_url")
    return (lambda: PostgresLeadership(url, "resolver")), f"PostgresLeadership({url!r}, 'resolver')"


def test_one_holder_at_a_time_and_release_hands_it_over(roles):
    make, _ = roles
    a, b = make(), make()
    try:
        assert a.try_acquire() and a.held and a.check()
        assert not b.try_acquire() and not b.held
        a.release()
        assert not a.held
        assert b.try_acquire()
        assert not a.try_acquire()
    finally:
        a.release()
        b.release()


def test_a_holder_killed_by_kill_9_frees_the_role(roles):
    make, expression = roles
    holder = holder_process(expression)
    survivor = make()
    try:
        assert not survivor.try_acquire()
        holder.kill()
        holder.wait(10)
        wait_until(survivor.try_acquire, 10, "the role freed by the holder's death", interval=0.1)
    finally:
        holder.kill()
        survivor.release()


def test_a_holder_whose_database_session_ends_knows_it_lost_the_role(ledger_url):
    import psycopg
    name = f"test-resolver-{uuid.uuid4().hex}"
    a, b = PostgresLeadership(ledger_url, name), PostgresLeadership(ledger_url, name)
    try:
        assert a.try_acquire()
        with psycopg.connect(ledger_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          (f"consorcio leadership {name}"[:63],))
        assert not a.check() and not a.held
        assert b.try_acquire()
    finally:
        a.release()
        b.release()


def test_ledgers_in_two_schemas_of_one_database_have_a_resolver_each(pg_schemas):
    """Advisory locks belong to the database; two banks' ledgers in it must not share one."""
    schemas = [pg_schemas.take(fresh=True) for _ in range(2)]
    leads = [PostgresLeadership(pg_schemas.url(s), "resolver") for s in schemas]
    try:
        assert all(lead.try_acquire() for lead in leads)
        assert not PostgresLeadership(pg_schemas.url(schemas[0]), "resolver").try_acquire()
    finally:
        for lead in leads:
            lead.release()
        pg_schemas.give_back(schemas)
