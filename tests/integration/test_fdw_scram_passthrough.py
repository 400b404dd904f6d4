"""SCRAM pass-through of fdw sets (PostgreSQL 18) through the fdw_source and fdw_consumer roles.

A consumer login reads the set's foreign tables as itself: no password is stored on the
consumer (its only user mapping has ``use_scram_passthrough`` and no password), the source
holds a login of the same name with the very same SCRAM verifier and SELECT on exactly the
set's tables. Runs against PostgreSQL 18 servers (``./dev integration-pg18``); on older ones
the role must refuse with the version it needs.
"""
import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import build_verifier
from test_pg_fdw import FdwEnv
from test_pg_fdw_roles import changed_tasks, failures, run_playbook, sync_sets

READER_PW = "Reader-'pw'-one"
NEW_PW = 'Reader-pw-two'


def passthrough_vars(env, reader):
    return dict(tablesync_sync_sets=sync_sets(env)[:1], fdw_consumer_local_copies={},
                fdw_consumer_mapping_roles=[],
                tablesync_fdw_scram_passthrough_roles=[reader])


def create_login(cluster, role, password):
    """The test's own statement sends a verifier, so no password reaches the server log."""
    cluster.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD %s').format(sql.Identifier(role)),
                    (build_verifier(password),))


def read_as(cluster, db, user, password):
    conn = psycopg2.connect(host=cluster.host, port=cluster.port, user=user, password=password,
                            dbname=db, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT count(*), sum(amount) FROM sales.orders')
            return cur.fetchone()
    finally:
        conn.close()


def verifier(cluster, role):
    return cluster.query('SELECT rolpassword FROM pg_authid WHERE rolname = %s', (role,))[0][0]


def test_reader_reads_through_passthrough_without_a_stored_password(publisher, subscriber):
    if min(publisher.version(), subscriber.version()) < 18:
        pytest.skip('SCRAM pass-through needs PostgreSQL 18 (run ./dev integration-pg18)')
    env = FdwEnv(publisher, subscriber)
    reader = env.remote_user + '_reader'
    create_login(subscriber, reader, READER_PW)
    extra = passthrough_vars(env, reader)
    first = run_playbook(env, publisher, subscriber, **extra)
    assert changed_tasks(first)
    env.dst_sql(sql.SQL('GRANT USAGE ON SCHEMA sales TO {0}; GRANT SELECT ON sales.orders TO {0}')
                .format(sql.Identifier(reader)))

    # consumer: one mapping, the reader's, pass-through and no password anywhere
    mappings = env.dst_sql("SELECT usename, umoptions FROM pg_user_mappings "
                           "WHERE srvname = 'tablesync_shop'")
    assert mappings == [(reader, ['use_scram_passthrough=true', 'user=' + reader])] or \
        mappings == [(reader, ['user=' + reader, 'use_scram_passthrough=true'])], mappings
    assert env.dst_sql("SELECT count(*) FROM pg_user_mappings, pg_options_to_table(umoptions) "
                       "WHERE option_name = 'password'") == [(0,)]
    # source: the same verifier, SELECT on exactly the set's table, nothing else
    assert verifier(publisher, reader) == verifier(subscriber, reader)
    assert env.src_sql(
        "SELECT rolcanlogin, rolsuper, rolreplication, "
        "has_table_privilege(rolname, 'sales.orders', 'SELECT'), "
        "has_table_privilege(rolname, 'sales.orders', 'INSERT'), "
        "has_table_privilege(rolname, 'sales.audit', 'SELECT') FROM pg_roles WHERE rolname = %s",
        (reader,)) == [(True, False, False, True, False, False)]
    hba = open(publisher.query('SHOW hba_file')[0][0]).read()
    assert '"%s"' % reader in hba and 'fdw scram pass-through: shop' in hba

    # the reader, logged in with SCRAM, reads the source's rows through the foreign table
    source_rows = env.src_sql('SELECT count(*), sum(amount) FROM sales.orders')[0]
    assert read_as(subscriber, env.dstdb, reader, READER_PW) == source_rows
    # a session without SCRAM keys (the superuser over the socket, trust) has no mapping
    with pytest.raises(psycopg2.Error):
        env.dst_sql('SELECT count(*) FROM sales.orders')

    second = run_playbook(env, publisher, subscriber, **extra)
    assert changed_tasks(second) == []

    # a password change on the consumer breaks pass-through until the next run copies it
    subscriber.execute(sql.SQL('ALTER ROLE {} PASSWORD %s').format(sql.Identifier(reader)),
                       (build_verifier(NEW_PW),))
    with pytest.raises(psycopg2.Error) as failed:
        read_as(subscriber, env.dstdb, reader, NEW_PW)
    assert 'authentication failed' in str(failed.value)
    third = run_playbook(env, publisher, subscriber, **extra)
    assert changed_tasks(third) == ['dst: tablesync.postgresql.fdw_consumer : The pass-through '
                                    "logins on the sources - same verifier, SELECT on the sets' "
                                    'tables there']
    assert read_as(subscriber, env.dstdb, reader, NEW_PW) == source_rows

    # no password of the reader reached a log or the run's output, nor the verifier the runs
    # copied (the subscriber's log has it from this test's own ALTER ROLE)
    runs = repr(first) + repr(second) + repr(third)
    for secret in (READER_PW, NEW_PW):
        assert secret not in publisher.log_text() + subscriber.log_text() + runs
    assert verifier(subscriber, reader) not in publisher.log_text() + runs


def test_older_consumer_is_refused_naming_the_version(publisher, subscriber):
    if subscriber.version() >= 18:
        pytest.skip('the refusal is for consumers before PostgreSQL 18')
    env = FdwEnv(publisher, subscriber)
    reader = env.remote_user + '_reader'
    create_login(subscriber, reader, READER_PW)
    data = run_playbook(env, publisher, subscriber, expect_ok=False,
                        **passthrough_vars(env, reader))
    assert 'needs PostgreSQL 18 on the consumer; this server runs %d' % subscriber.version() \
        in ' '.join(failures(data).split())
    # refused before anything of the set was made on either side
    assert env.dst_sql("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'tablesync_shop'") \
        == [(0,)]
    assert publisher.query('SELECT count(*) FROM pg_roles WHERE rolname = %s', (reader,)) == [(0,)]
