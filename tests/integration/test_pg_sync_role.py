"""tablesync.postgresql.pg_sync_role against the publisher cluster."""
import uuid

import psycopg2
import pytest

from runner import run_module, run_tasks

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import (
    parse_verifier, verify_password)

MODULE = 'tablesync.postgresql.pg_sync_role'
DB = 'syncrole'
OTHER_DB = 'syncrole_other'


@pytest.fixture(scope='module')
def pg(publisher):
    for db in (DB, OTHER_DB):
        publisher.execute('CREATE DATABASE %s' % db)
    publisher.execute('''
        CREATE SCHEMA s;
        CREATE SCHEMA "Odd ""Schema""";
        CREATE TABLE s.a (id int);
        CREATE TABLE s.b (id int);
        CREATE TABLE s.secret (id int);
        CREATE TABLE s.w (id int);
        CREATE TABLE "Odd ""Schema""".";Mixed Täble" (id int);
        INSERT INTO s.a VALUES (1);
        INSERT INTO s.secret VALUES (42);
    ''', dbname=DB)
    yield publisher


def role_name(prefix='sync'):
    return '%s_%s' % (prefix, uuid.uuid4().hex[:8])


def task(pg, name, **args):
    args = dict(pg.login(DB), name=name, **args)
    return {'name': 'pg_sync_role', MODULE: args, 'ignore_errors': True}


def run_role(pg, name, **kw):
    args = dict(kw.pop('args', {}))
    return run_module(MODULE, dict(pg.login(kw.pop('dbname', DB)), name=name, **args), **kw)


def connect_as(pg, name, password, dbname=DB):
    return psycopg2.connect(host=pg.host, port=pg.port, user=name, password=password,
                            dbname=dbname, connect_timeout=10)


def can(pg, name, password, statement):
    conn = connect_as(pg, name, password)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        conn.close()


def login_fails(pg, name, password):
    with pytest.raises(psycopg2.OperationalError) as e:
        connect_as(pg, name, password).close()
    return 'password authentication failed' in str(e.value)


def privileges(pg, name):
    return pg.query('''
        SELECT c.oid::regclass::text, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)
        ORDER BY 1, 2''', (name,), dbname=DB)


def stored_password(pg, name):
    return pg.query('SELECT rolpassword FROM pg_authid WHERE rolname = %s', (name,))[0][0]


def test_create_login_and_select_only_listed_tables(pg):
    name = role_name()
    password = 'Pw-%s' % uuid.uuid4().hex
    spec = dict(password=password, replication=True,
                select_tables=['s.a', '"Odd ""Schema""".";Mixed Täble"'],
                insert_update_delete_tables=['s.w'])
    run = run_tasks([task(pg, name, **spec), task(pg, name, **spec)])
    first, second = run.results
    assert first['changed'] and not first.get('failed'), first
    assert first['queries'] == [
        'CREATE ROLE "%s" WITH LOGIN REPLICATION PASSWORD \'********\'' % name,
        'GRANT USAGE ON SCHEMA "Odd ""Schema""", "s" TO "%s"' % name,
        'GRANT SELECT ON TABLE "Odd ""Schema""".";Mixed Täble", "s"."a" TO "%s"' % name,
        'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "s"."w" TO "%s"' % name,
    ]
    assert first['role'] == {
        'name': name, 'exists': True, 'superuser': False, 'login': True, 'replication': True,
        'connection_limit': -1, 'database': DB, 'removed_powers': [], 'removed_memberships': [],
        'member_of': [], 'replication_roles': [],
        'select_tables': ['Odd "Schema".;Mixed Täble', 's.a'],
        'insert_update_delete_tables': ['s.w']}
    assert second['changed'] is False and second['queries'] == []

    assert pg.query('SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = %s',
                    (name,)) == [(True, False)]
    assert can(pg, name, password, 'SELECT * FROM s.a')
    assert can(pg, name, password, 'SELECT * FROM "Odd ""Schema""".";Mixed Täble"')
    assert not can(pg, name, password, 'SELECT * FROM s.secret')
    assert not can(pg, name, password, 'INSERT INTO s.a VALUES (2)')
    assert can(pg, name, password, 'INSERT INTO s.w VALUES (2)')
    assert can(pg, name, password, 'TRUNCATE s.w')


def test_changed_table_list_revokes(pg):
    name, password = role_name('Ü' * 27), 'Pw-%s' % uuid.uuid4().hex
    assert len(name.encode('utf-8')) == 63
    run = run_tasks([
        task(pg, name, password=password, select_tables=['s.a', 's.secret'],
             insert_update_delete_tables=['s.w']),
        task(pg, name, password=password, select_tables=['s.b', 's.w']),
        task(pg, name, password=password, select_tables=['s.b', 's.w']),
    ])
    first, second, third = run.results
    assert not first.get('failed') and not second.get('failed'), run.results
    assert second['queries'] == [
        'GRANT SELECT ON TABLE "s"."b" TO "%s"' % name,
        'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "s"."w" FROM "%s"' % name,
        'REVOKE SELECT ON TABLE "s"."a", "s"."secret" FROM "%s"' % name,
    ]
    assert third['queries'] == []
    assert privileges(pg, name) == [('s.b', 'SELECT'), ('s.w', 'SELECT')]
    assert not can(pg, name, password, 'SELECT * FROM s.a')
    assert can(pg, name, password, 'SELECT * FROM s.b')


def test_password_change_detected_and_applied(pg):
    name = role_name('Mixed "Qü"; \' DROP ROLE x;--')
    old, new = 'Old-%s' % uuid.uuid4().hex, 'New-%s' % uuid.uuid4().hex
    run = run_tasks([
        task(pg, name, password=old, select_tables=['s.a']),
        task(pg, name, password=new, select_tables=['s.a']),
        task(pg, name, password=new, select_tables=['s.a']),
        task(pg, name, password='Other-1', update_password='on_create', select_tables=['s.a']),
    ])
    first, second, third, fourth = run.results
    assert second['changed'] and second['queries'] == [
        'ALTER ROLE "%s" WITH PASSWORD \'********\'' % name.replace('"', '""')]
    assert third['changed'] is False and third['queries'] == []
    assert fourth['changed'] is False and fourth['queries'] == []
    assert login_fails(pg, name, old)
    assert can(pg, name, new, 'SELECT * FROM s.a')
    verifier = stored_password(pg, name)
    assert parse_verifier(verifier).iterations == 4096
    assert verify_password(new, verifier)


# Stable ids (pytest-xdist workers must collect the same tests); the random part is added inside.
@pytest.mark.parametrize('password', ['server-made-', 'pässwörd ﬁ\u00a0'], ids=['ascii', 'unicode'])
def test_verifier_made_by_the_server_is_recognised(pg, password):
    password += uuid.uuid4().hex[:6]
    name = role_name()
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET password_encryption = 'scram-sha-256'")
            cur.execute('CREATE ROLE "%s" LOGIN PASSWORD %%s' % name, (password,))
    finally:
        conn.close()
    verifier = stored_password(pg, name)
    assert verify_password(password, verifier)
    assert not verify_password(password + 'x', verifier)
    result = run_role(pg, name, args=dict(password=password))
    assert result['changed'] is False and result['queries'] == [], result


def test_password_never_shown_nor_logged(pg):
    name = role_name()
    password = 'Never-Shown-%s' % uuid.uuid4().hex
    log_start = len(pg.log_text())
    tasks = [task(pg, name, password=password, replication=True, select_tables=['s.a'])]
    verbose = run_tasks(tasks, verbosity=3, callback=None, diff=True)
    assert verbose.rc == 0, verbose.output
    assert password not in verbose.output
    change = run_tasks([task(pg, name, password=password + '2', select_tables=['s.a'])],
                       diff=True, verbosity=3)
    result = change.results[0]
    assert result['changed'] and not result.get('failed'), result
    for text in (change.output, repr(result['queries']), repr(result.get('diff')),
                 repr(result['role'])):
        assert password not in text
    checked = run_tasks(tasks, check=True, diff=True, verbosity=3)
    assert password not in checked.output
    logged = pg.log_text()[log_start:]
    # the server logs every statement, but the executor runs the ones carrying a password (here
    # already a SCRAM verifier) with statement logging off: neither the statement nor the
    # password reaches the log, while the module's other statements do
    assert 'pg_authid' in logged or 'pg_roles' in logged
    assert 'CREATE ROLE "%s"' % name not in logged
    assert password not in logged
    assert verify_password(password + '2', stored_password(pg, name))


def test_check_mode_changes_nothing(pg):
    name, password = role_name(), 'Pw-%s' % uuid.uuid4().hex
    created = run_tasks([task(pg, name, password=password, select_tables=['s.a'])],
                        check=True, diff=True).results[0]
    assert created['changed'] and len(created['queries']) == 3
    assert created['diff']['before'] == {'name': name, 'exists': False, 'password': 'not set'}
    assert created['role']['select_tables'] == ['s.a']
    assert pg.query('SELECT 1 FROM pg_roles WHERE rolname = %s', (name,)) == []

    run_tasks([task(pg, name, password=password, select_tables=['s.a'])])
    before = (privileges(pg, name), stored_password(pg, name))
    changed = run_tasks([task(pg, name, password='x' + password, replication=True,
                              connection_limit=3, select_tables=['s.b'],
                              insert_update_delete_tables=['s.w'])],
                        check=True, diff=True).results[0]
    assert changed['changed'] and len(changed['queries']) == 4
    assert changed['diff']['after']['password'] == 'changed'
    assert (privileges(pg, name), stored_password(pg, name)) == before
    assert pg.query('SELECT rolreplication, rolconnlimit FROM pg_roles WHERE rolname = %s',
                    (name,)) == [(False, -1)]


def test_missing_tables_fail_naming_all_and_nothing_is_made(pg):
    name = role_name()
    result = run_role(pg, name, args=dict(password='x-1', select_tables=['s.a', 's.nope'],
                                          insert_update_delete_tables=['gone.t', 'Nope']))
    assert result.get('failed')
    assert result['msg'] == 'Tables not found in database %s: gone.t, public.Nope, s.nope.' % DB
    assert pg.query('SELECT 1 FROM pg_roles WHERE rolname = %s', (name,)) == []


def test_superusers_are_refused(pg):
    for state in ('present', 'absent'):
        result = run_role(pg, 'postgres', args=dict(state=state))
        assert result.get('failed') and 'superuser' in result['msg']
    assert pg.query("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'") == [(True,)]


def test_existing_role_is_stripped_of_what_a_sync_role_must_not_have(pg):
    """Issue 13 finding 7: an existing role with powers is made least-privilege and the task
    says what was removed."""
    name = role_name()
    pg.execute('CREATE ROLE "%s" LOGIN CREATEROLE CREATEDB BYPASSRLS IN ROLE pg_read_all_data, '
               'pg_execute_server_program' % name)
    result = run_role(pg, name, args=dict(select_tables=['s.a']))
    assert result['changed'] and not result.get('failed'), result
    assert result['role']['removed_powers'] == ['createrole', 'createdb', 'bypassrls']
    assert result['role']['removed_memberships'] == ['pg_execute_server_program',
                                                     'pg_read_all_data']
    assert pg.query('SELECT rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE '
                    'rolname = %s', (name,)) == [(False, False, False)]
    assert pg.query('SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member '
                    'WHERE r.rolname = %s', (name,)) == [(0,)]
    again = run_role(pg, name, args=dict(select_tables=["s.a"]))
    assert again["changed"] is False, again["queries"]


def test_member_of_monitoring_roles_only(pg):
    name = role_name()
    first = run_role(pg, name, args=dict(member_of=['pg_monitor']))
    assert first['changed'] and first['role']['member_of'] == ['pg_monitor'], first
    assert 'GRANT "pg_monitor" TO "%s"' % name in first['queries']
    assert run_role(pg, name, args=dict(member_of=['pg_monitor']))['changed'] is False
    refused = run_role(pg, name, args=dict(member_of=['pg_read_all_data']))
    assert refused.get('failed') and 'pg_read_all_data' in refused['msg']
    dropped = run_role(pg, name, args=dict(member_of=[]))
    assert dropped['queries'] == ['REVOKE "pg_monitor" FROM "%s"' % name]


def test_absent_revokes_then_drops(pg):
    name = role_name()
    assert not run_role(pg, name, args=dict(
        password='x-1', select_tables=['s.a'], insert_update_delete_tables=['s.w'])).get('failed')
    pg.execute('GRANT CONNECT ON DATABASE %s TO "%s"' % (DB, name))
    run = run_tasks([task(pg, name, state='absent'), task(pg, name, state='absent')])
    second, third = run.results
    assert not second.get('failed'), second
    assert second['queries'] == [
        'REVOKE ALL ON TABLE "s"."a", "s"."w" FROM "%s"' % name,
        'REVOKE ALL ON SCHEMA "s" FROM "%s"' % name,
        'REVOKE ALL ON DATABASE "%s" FROM "%s"' % (DB, name),
        'DROP ROLE "%s"' % name,
    ]
    assert second['role'] == {'name': name, 'exists': False}
    assert third['changed'] is False and third['queries'] == []
    assert pg.query('SELECT 1 FROM pg_roles WHERE rolname = %s', (name,)) == []


def test_absent_refuses_when_the_role_has_objects_elsewhere(pg):
    name = role_name()
    assert not run_role(pg, name, args=dict(select_tables=['s.a'])).get('failed')
    pg.execute('CREATE TABLE owned_elsewhere (id int); ALTER TABLE owned_elsewhere OWNER TO "%s"'
               % name, dbname=OTHER_DB)
    pg.execute('GRANT CONNECT ON DATABASE %s TO "%s"' % (OTHER_DB, name))
    result = run_role(pg, name, args=dict(state='absent'))
    assert result.get('failed')
    assert '%s (owner: 1 object)' % OTHER_DB in result['msg']
    assert 'the whole cluster (databases, tablespaces) (privileges: 1 object)' in result['msg']
    assert 'REASSIGN OWNED BY' in result['msg']
    assert privileges(pg, name) == [('s.a', 'SELECT')]   # nothing revoked
    pg.execute('DROP TABLE owned_elsewhere', dbname=OTHER_DB)
    pg.execute('REVOKE CONNECT ON DATABASE %s FROM "%s"' % (OTHER_DB, name))
    result = run_role(pg, name, args=dict(state='absent'))
    assert result['changed'] and not result.get('failed'), result


def _statements_logged(pg, since):
    return sum(1 for line in pg.log_text()[since:].splitlines() if 'LOG:  statement: ' in line)


def test_thousand_tables_one_grant_and_constant_catalog_reads(pg):
    pg.execute('''
        CREATE SCHEMA bulk;
        DO $$ BEGIN
            FOR i IN 1..1000 LOOP EXECUTE format('CREATE TABLE bulk.t%s (id int)', i); END LOOP;
        END $$''', dbname=DB)
    tables = ['bulk.t%d' % i for i in range(1, 1001)]
    counts = {}
    for size in (10, 1000):
        name = role_name('bulk%d' % size)
        since = len(pg.log_text())
        run = run_tasks([task(pg, name, select_tables=tables[:size]),
                         task(pg, name, select_tables=tables[:size])])
        first, second = run.results
        assert not first.get('failed'), first
        assert len(first['queries']) == 3       # CREATE ROLE, GRANT USAGE, one GRANT SELECT
        assert first['queries'][2].count('"bulk"."t') == size
        assert second['changed'] is False and second['queries'] == []
        counts[size] = _statements_logged(pg, since)
        assert len(privileges(pg, name)) == size
        half = run_tasks([task(pg, name, select_tables=tables[:size // 2],
                               insert_update_delete_tables=tables[size // 2:size])]).results[0]
        assert len(half['queries']) == 1 and half['queries'][0].startswith(
            'GRANT INSERT, UPDATE, DELETE, TRUNCATE ON TABLE')
    # statements sent to the server (catalog reads included) do not grow with the tables
    assert counts[10] == counts[1000], counts


def test_without_superuser_the_password_is_set_every_run_unless_on_create(pg):
    admin, name = role_name('admin'), role_name()
    pg.execute('CREATE ROLE "%s" LOGIN CREATEROLE PASSWORD %%s' % admin, ('Admin-pw-1',))
    login = dict(pg.login(DB), login_user=admin, login_password='Admin-pw-1')
    tasks = [{'name': 'as admin', MODULE: dict(login, name=name, password='Pw-1', **extra),
              'ignore_errors': True}
             for extra in ({}, {}, {'update_password': 'on_create'})]
    first, second, third = run_tasks(tasks).results
    assert first['changed'] and not first.get('failed'), first
    assert second['queries'] == ['ALTER ROLE "%s" WITH PASSWORD \'********\'' % name]
    assert any('update_password=on_create' in w for w in second['warnings'])
    assert third['changed'] is False and third['queries'] == []
    assert can(pg, name, 'Pw-1', 'SELECT 1')


def test_login_attribute_is_not_the_login_user_alias(pg):
    name = role_name()
    run = run_tasks([task(pg, name, login=False, connection_limit=2),
                     task(pg, name, login=True, connection_limit=2),
                     task(pg, name, login=True)])
    first, second, third = run.results
    assert first['queries'] == ['CREATE ROLE "%s" WITH NOLOGIN NOREPLICATION CONNECTION LIMIT 2'
                                % name], first
    assert second['queries'] == ['ALTER ROLE "%s" WITH LOGIN' % name]
    assert third['changed'] is False and third['role']['connection_limit'] == 2
    assert pg.query('SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = %s',
                    (name,)) == [(True, 2)]


def test_sequences_of_the_tables(pg):
    """sequences: select/update on exactly the sequences the tables use (serial, identity, a
    default calling a sequence of another schema), others revoked; idempotent; check mode;
    state=absent revokes them too."""
    name, password = role_name('seq'), 'Pw-%s' % uuid.uuid4().hex
    tag = uuid.uuid4().hex[:6]
    pg.execute('''
        CREATE SCHEMA "seqs_{t}";
        CREATE SEQUENCE "seqs_{t}".shared;
        CREATE SEQUENCE s.unrelated_{t};
        CREATE TABLE s.serial_{t} (id serial PRIMARY KEY);
        CREATE TABLE s.ident_{t} (id int GENERATED ALWAYS AS IDENTITY, n bigint DEFAULT nextval('"seqs_{t}".shared'));
        CREATE ROLE "{n}" LOGIN;
        GRANT USAGE ON SCHEMA s TO "{n}";
        GRANT SELECT, UPDATE ON SEQUENCE s.unrelated_{t} TO "{n}";
    '''.format(t=tag, n=name), dbname=DB)
    tables = ['s.serial_%s' % tag, 's.ident_%s' % tag]
    ident_seq = pg.query("SELECT pg_get_serial_sequence('s.ident_%s', 'id')" % tag, dbname=DB)[0][0]
    assert ident_seq.startswith('s.')
    spec = dict(password=password, select_tables=tables, sequences='select')

    checked = run_role(pg, name, args=spec, check=True)
    assert checked['changed'] is True and not checked.get('failed'), checked
    assert 'GRANT USAGE ON SCHEMA "seqs_%s" TO "%s"' % (tag, name) in checked['queries']
    assert pg.query("SELECT has_sequence_privilege(%s, 's.unrelated_' || %s, 'UPDATE')",
                    (name, tag), dbname=DB) == [(True,)]

    run = run_tasks([task(pg, name, **spec), task(pg, name, **spec)])
    first, second = run.results
    assert not first.get('failed'), first
    seq_queries = [q for q in first['queries'] if 'SEQUENCE' in q]
    assert seq_queries == [
        'GRANT SELECT ON SEQUENCE "%s"."%s", "s"."serial_%s_id_seq", "seqs_%s"."shared" TO "%s"'
        % (ident_seq.split('.')[0], ident_seq.split('.')[1], tag, tag, name),
        'REVOKE SELECT, UPDATE ON SEQUENCE "s"."unrelated_%s" FROM "%s"' % (tag, name),
    ]
    assert first['role']['sequences'] == sorted([ident_seq, 's.serial_%s_id_seq' % tag,
                                                 'seqs_%s.shared' % tag])
    assert first['diff']['before']['sequences'] == ['s.unrelated_%s' % tag]
    assert second['changed'] is False and second['queries'] == []
    assert can(pg, name, password, 'SELECT last_value FROM "seqs_%s".shared' % tag)
    assert can(pg, name, password, 'SELECT last_value FROM s.serial_%s_id_seq' % tag)
    assert not can(pg, name, password, "SELECT setval('s.serial_%s_id_seq', 5)" % tag)
    assert not can(pg, name, password, 'SELECT last_value FROM s.unrelated_%s' % tag)

    update = run_role(pg, name, args=dict(spec, sequences='update'))
    assert [q for q in update['queries'] if 'SEQUENCE' in q] == [
        'GRANT UPDATE ON SEQUENCE "%s"."%s", "s"."serial_%s_id_seq", "seqs_%s"."shared" TO "%s"'
        % (ident_seq.split('.')[0], ident_seq.split('.')[1], tag, tag, name)]
    assert can(pg, name, password, "SELECT setval('s.serial_%s_id_seq', 5)" % tag)

    # unset: sequence privileges left alone
    unset = run_role(pg, name, args=dict(password=password, select_tables=tables))
    assert unset['changed'] is False and 'sequences' not in unset['role'], unset

    gone = run_role(pg, name, args=dict(state='absent'))
    assert not gone.get('failed'), gone
    assert gone['queries'][-1] == 'DROP ROLE "%s"' % name
    assert pg.query('SELECT 1 FROM pg_roles WHERE rolname = %s', (name,)) == []


def test_provider_replication_role_instead_of_the_attribute(pg):
    """A managed service's role that gives replication connections (rds_replication): the
    replication role becomes its member, without the REPLICATION attribute, once."""
    provider, name = role_name('provider'), role_name()
    pg.execute('CREATE ROLE "%s" NOLOGIN' % provider)
    args = dict(replication=False, replication_role=provider, select_tables=['s.a'])
    first = run_role(pg, name, args=args)
    assert first['changed'] and 'GRANT "%s" TO "%s"' % (provider, name) in first['queries'], first
    assert first['role']['replication_roles'] == [provider]
    assert pg.query("SELECT r.rolreplication, pg_has_role(r.oid, %s, 'MEMBER') FROM pg_roles r "
                    "WHERE r.rolname = %s", (provider, name)) == [(False, True)]
    again = run_role(pg, name, args=args)
    assert again['changed'] is False and again['queries'] == [], again
