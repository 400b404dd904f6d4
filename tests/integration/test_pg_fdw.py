"""postgres_fdw modules against two real clusters: the source (publisher fixture) holds the
tables, the consumer (subscriber fixture) gets the server, user mappings and foreign tables.

Every test has its own source and consumer databases, remote login role and server name.
"""
import itertools
import os

from psycopg2 import sql

from runner import run_tasks

PREFIX = 'tablesync.postgresql.'
_serial = itertools.count(1)

HOSTILE_TABLE = 'Order "Items"; ünï'
HOSTILE_SCHEMA = 'Local Schema ✓'


def _tag():
    return '%d_%d' % (os.getpid() % 10000, next(_serial))


class FdwEnv(object):
    """A source database with two tables and a login role, a consumer database, module args."""

    def __init__(self, source, consumer):
        tag = _tag()
        self.source, self.consumer = source, consumer
        self.srcdb, self.dstdb = 'fdwsrc_%s' % tag, 'fdwdst_%s' % tag
        self.server = 'src_%s' % tag
        self.remote_user = 'fdw_%s' % tag
        self.password = "Remote-'pw'-%s" % tag
        for cluster, db in ((source, self.srcdb), (consumer, self.dstdb)):
            cluster.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(db)))
        self.src_sql(sql.SQL(
            'CREATE SCHEMA sales; '
            'CREATE TABLE sales.orders (id int PRIMARY KEY, note text, '
            '  amount numeric(10,2) NOT NULL DEFAULT 0); '
            'CREATE TABLE sales.audit (id int); '
            'CREATE TABLE sales.{} (id int PRIMARY KEY); '
            "INSERT INTO sales.orders SELECT g, 'order ' || g, g FROM generate_series(1, 10) g; "
            'CREATE ROLE {} LOGIN PASSWORD %s; '
            'GRANT USAGE ON SCHEMA sales TO {}; '
            'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sales TO {}').format(
                sql.Identifier(HOSTILE_TABLE), *[sql.Identifier(self.remote_user)] * 3),
            (self.password,))

    # ---- SQL on either side ----------------------------------------------------------------
    def src_sql(self, text, params=None):
        return self.source.query(text, params, dbname=self.srcdb)

    def dst_sql(self, text, params=None):
        return self.consumer.query(text, params, dbname=self.dstdb)

    def foreign_tables(self, schema='shop'):
        return [r[0] for r in self.dst_sql(
            'SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace '
            "WHERE c.relkind = 'f' AND n.nspname = %s ORDER BY 1", (schema,))]

    def server_options(self):
        rows = self.dst_sql('SELECT srvoptions FROM pg_foreign_server WHERE srvname = %s',
                            (self.server,))
        return rows[0][0] if rows else None

    def stored_password(self, role='postgres'):
        rows = self.dst_sql("SELECT option_value FROM pg_user_mappings um, "
                            "pg_options_to_table(um.umoptions) WHERE um.srvname = %s "
                            "AND um.usename = %s AND option_name = 'password'",
                            (self.server, role))
        return rows[0][0] if rows else None

    # ---- module tasks ----------------------------------------------------------------------
    def task(self, module, **args):
        a = dict(self.consumer.login(self.dstdb))
        a.update(args)
        return {'name': module, PREFIX + module: a, 'ignore_errors': True}

    def server_task(self, **kw):
        options = dict(host=self.source.host, port=self.source.port, dbname=self.srcdb)
        options.update(kw.pop('extra_options', {}))
        return self.task('pg_fdw_server', name=self.server, options=options, **kw)

    def mapping_task(self, password=None, **kw):
        mapping = dict(role='postgres', user=self.remote_user,
                       password=self.password if password is None else password)
        return self.task('pg_fdw_user_mappings', server=self.server, mappings=[mapping], **kw)

    def tables_task(self, **kw):
        args = dict(server=self.server, schema='shop', remote_schema='sales')
        args.update(kw)
        return self.task('pg_foreign_tables', **args)

    def setup_tasks(self, **tables):
        return [self.server_task(), self.mapping_task(), self.tables_task(**tables)]


def ok(result):
    assert not result.get('failed'), result.get('msg') or result
    return result


def unchanged(result):
    ok(result)
    assert result['changed'] is False and result['queries'] == [], result['queries']


def failed(result, *fragments):
    assert result.get('failed'), result
    for fragment in fragments:
        assert fragment in result['msg'], result['msg']
    return result['msg']


# ---- reads and writes ---------------------------------------------------------------------

def test_import_reads_writes_and_is_idempotent(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    first = env.setup_tasks(exclude_tables=['audit'])
    run = run_tasks(first + first)
    assert run.rc == 0, run.output
    server, mapping, tables = [ok(r) for r in run.results[:3]]
    assert server['changed'] and server['exists']
    assert mapping['user_mappings'] == [{'role': 'postgres', 'user': env.remote_user,
                                         'password_set': True, 'options': {}}]
    assert sorted(tables['imported']) == sorted(['shop.orders', 'shop.' + HOSTILE_TABLE])
    # IMPORT FOREIGN SCHEMA handles every table in one statement
    assert [q for q in tables['queries'] if q.startswith('IMPORT')] == [
        'IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("Order ""Items""; ünï", "orders") '
        'FROM SERVER "%s" INTO "shop"' % env.server]
    for result in run.results[3:]:
        unchanged(result)
    assert env.foreign_tables() == [HOSTILE_TABLE, 'orders']

    assert env.dst_sql('SELECT count(*), sum(amount) FROM shop.orders') == [(10, 55)]
    env.dst_sql("INSERT INTO shop.orders (id, note, amount) VALUES (11, 'via fdw', 11)")
    env.dst_sql("UPDATE shop.orders SET note = 'changed' WHERE id = 1")
    env.dst_sql('DELETE FROM shop.orders WHERE id = 2')
    env.dst_sql(sql.SQL('INSERT INTO shop.{} VALUES (7)').format(sql.Identifier(HOSTILE_TABLE)))
    assert env.src_sql('SELECT id, note FROM sales.orders WHERE id IN (1, 2, 11) ORDER BY id') \
        == [(1, 'changed'), (11, 'via fdw')]
    assert env.src_sql(sql.SQL('SELECT id FROM sales.{}').format(
        sql.Identifier(HOSTILE_TABLE))) == [(7,)]


def test_explicit_table_hostile_names_and_write_batches(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    explicit = {'name': 'Inbox; "x"', 'remote_name': 'orders', 'options': {'batch_size': 50},
                'columns': [{'name': 'Id', 'type': 'int4', 'not_null': True,
                             'remote_name': 'id'},
                            {'name': 'text', 'type': 'varchar(40)', 'remote_name': 'note'}]}
    task = env.tables_task(schema=HOSTILE_SCHEMA, tables=[explicit])
    run = run_tasks([env.server_task(), env.mapping_task(), task, task])
    assert run.rc == 0, run.output
    created = ok(run.results[2])
    assert created['created'] == ['%s.%s' % (HOSTILE_SCHEMA, 'Inbox; "x"')]
    assert created['tables'][0]['columns'] == [
        {'name': 'Id', 'type': 'integer', 'not_null': True, 'remote_name': 'id'},
        {'name': 'text', 'type': 'character varying(40)', 'not_null': False,
         'remote_name': 'note'}]
    unchanged(run.results[3])
    target = sql.Identifier(HOSTILE_SCHEMA, 'Inbox; "x"')
    env.dst_sql(sql.SQL("INSERT INTO {} SELECT g, 'batch ' || g FROM generate_series(100, 219) g")
                .format(target))
    assert env.src_sql("SELECT count(*) FROM sales.orders WHERE note LIKE 'batch %%'") == [(120,)]
    assert env.dst_sql(sql.SQL('SELECT count(*) FROM {}').format(target)) == [(130,)]


# ---- server options -----------------------------------------------------------------------

def test_server_options_owner_comment_in_place_and_check_mode(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    env.dst_sql('CREATE ROLE fdw_owner_%s' % env.server)
    run = run_tasks(env.setup_tasks(tables=['orders']))
    assert run.rc == 0, run.output
    oid_before = env.dst_sql('SELECT oid FROM pg_foreign_server WHERE srvname = %s',
                             (env.server,))

    tuned = env.server_task(extra_options={'fetch_size': 5000, 'batch_size': 500,
                                           'async_capable': True},
                            owner='fdw_owner_%s' % env.server, comment="it's the source")
    check = run_tasks([tuned], check=True, diff=True)
    result = ok(check.results[0])
    assert result['changed'] and result['queries'] == [
        'ALTER SERVER "%s" OPTIONS (ADD "fetch_size" \'5000\', ADD "batch_size" \'500\', '
        'ADD "async_capable" \'true\')' % env.server,
        'ALTER SERVER "%s" OWNER TO "fdw_owner_%s"' % (env.server, env.server),
        'COMMENT ON SERVER "%s" IS \'it\'\'s the source\'' % env.server]
    assert result['diff']['after']['options']['fetch_size'] == '5000'
    assert 'fetch_size=5000' not in env.server_options()  # check mode changed nothing

    run = run_tasks([tuned, tuned])
    ok(run.results[0])
    unchanged(run.results[1])
    assert set(env.server_options()) >= {'fetch_size=5000', 'batch_size=500',
                                         'async_capable=true'}
    assert env.dst_sql('SELECT pg_get_userbyid(srvowner), obj_description(oid, '
                       "'pg_foreign_server') FROM pg_foreign_server WHERE srvname = %s",
                       (env.server,)) == [('fdw_owner_%s' % env.server, "it's the source")]

    # drop an option, change another: in place, the server (and its tables) stay
    result = ok(run_tasks([env.server_task(extra_options={'fetch_size': 100})]).results[0])
    assert result['queries'] == ['ALTER SERVER "%s" OPTIONS (SET "fetch_size" \'100\', '
                                 'DROP "async_capable", DROP "batch_size")' % env.server]
    assert env.dst_sql('SELECT oid FROM pg_foreign_server WHERE srvname = %s',
                       (env.server,)) == oid_before
    assert env.dst_sql('SELECT count(*) FROM shop.orders') == [(10,)]


# ---- user mappings --------------------------------------------------------------------------

def test_mapping_password_change_detected_applied_never_shown(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks(tables=['orders']))
    assert run.rc == 0, run.output
    old, new = env.password, "N3w-'pw'; %s" % env.server
    env.src_sql(sql.SQL('ALTER ROLE {} PASSWORD %s').format(sql.Identifier(env.remote_user)),
                (new,))

    check = ok(run_tasks([env.mapping_task(new)], check=True).results[0])
    assert check['changed'] and check['password_changed'] == ['postgres']
    assert env.stored_password() == old  # check mode proven from the catalog

    run = run_tasks([env.mapping_task(new), env.mapping_task(new)], diff=True)
    changed = ok(run.results[0])
    assert changed['password_changed'] == ['postgres']
    assert changed['queries'][-1] == ('ALTER USER MAPPING FOR "postgres" SERVER "%s" OPTIONS '
                                      '(SET "password" \'********\')' % env.server)
    unchanged(run.results[1])
    assert env.stored_password() == new
    assert env.dst_sql('SELECT count(*) FROM shop.orders') == [(10,)]

    # verbose output of a change, the server log: neither password anywhere
    env.src_sql(sql.SQL('ALTER ROLE {} PASSWORD %s').format(sql.Identifier(env.remote_user)),
                (old,))
    verbose = run_tasks([env.mapping_task(old)], verbosity=3, callback=None, diff=True)
    assert verbose.rc == 0, verbose.output
    assert 'changed: [localhost]' in verbose.output
    for secret in (old, new, old.replace("'", "''"), new.replace("'", "''")):
        assert secret not in verbose.output
        assert secret not in run.output
        assert secret not in subscriber.log_text()


def test_mapping_public_exclusive_and_absent(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    env.dst_sql('CREATE ROLE "Reader ✓"')
    run = run_tasks([
        env.server_task(),
        env.task('pg_fdw_user_mappings', server=env.server, mappings=[
            {'role': 'PUBLIC', 'user': env.remote_user, 'password': env.password},
            {'role': 'Reader ✓', 'user': env.remote_user,
             'options': {'sslcert': '/etc/ssl/fdw client.crt'}}]),
        env.task('pg_fdw_user_mappings', server=env.server, exclusive=True,
                 mappings=[{'role': 'public'}]),
        env.task('pg_fdw_user_mappings', server=env.server,
                 mappings=[{'role': 'PUBLIC', 'state': 'absent'}]),
    ])
    assert run.rc == 0, run.output
    created = ok(run.results[1])
    assert [m['role'] for m in created['user_mappings']] == ['PUBLIC', 'Reader ✓']
    assert ok(run.results[2])['queries'] == [
        'DROP USER MAPPING FOR "Reader ✓" SERVER "%s"' % env.server]
    assert ok(run.results[3])['queries'] == [
        'DROP USER MAPPING FOR PUBLIC SERVER "%s"' % env.server]
    assert env.dst_sql('SELECT count(*) FROM pg_user_mappings WHERE srvname = %s',
                       (env.server,)) == [(0,)]


# ---- drift ----------------------------------------------------------------------------------

def test_drift_reported_then_updated(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks())
    assert run.rc == 0, run.output
    env.src_sql("ALTER TABLE sales.orders ADD COLUMN discount numeric(5,2) DEFAULT 0.5, "
                "ALTER COLUMN note SET NOT NULL")
    env.dst_sql('CREATE VIEW public.order_notes AS SELECT id, note FROM shop.orders')

    run = run_tasks([env.tables_task(), env.tables_task(on_drift='fail'),
                     env.tables_task(on_drift='update'), env.tables_task(on_drift='fail')])
    report, fail, update, again = run.results
    unchanged(report)
    assert report['drift'] == {'shop.orders': {
        'added': ['discount'], 'removed': [], 'changed': [
            {'column': 'note', 'local': 'text', 'remote': 'text NOT NULL'}]}}
    assert any('shop.orders differs from its remote table' in w for w in report['warnings'])
    failed(fail, 'on_drift: fail', 'remote columns not here: discount')
    assert ok(update)['queries'] == [
        'ALTER FOREIGN TABLE "shop"."orders" ALTER COLUMN "note" SET NOT NULL, ADD COLUMN '
        '"discount" numeric(5,2) OPTIONS ("column_name" \'discount\')']
    unchanged(again)
    assert again['drift'] == {}
    assert env.dst_sql('SELECT sum(discount) FROM shop.orders') == [(5,)]
    assert env.dst_sql('SELECT count(*) FROM public.order_notes') == [(10,)]  # view kept


# ---- check mode on a fresh database -------------------------------------------------------

def test_check_mode_on_fresh_database_changes_nothing(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks(tables=['orders']), check=True)
    assert run.rc == 0, run.output
    server, mapping, tables = [ok(r) for r in run.results]
    assert server['changed'] and mapping.get('failed') is None
    assert tables['changed'] and tables['queries'][-1].startswith(
        'IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("orders")')
    assert any('could not be read' in w for w in tables['warnings'])
    assert env.dst_sql("SELECT count(*) FROM pg_extension WHERE extname = 'postgres_fdw'") \
        == [(0,)]
    assert env.server_options() is None
    assert env.dst_sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'shop'") == [(0,)]


def test_check_mode_import_and_drift_update_change_nothing(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks(tables=['orders']))
    assert run.rc == 0, run.output
    env.src_sql('ALTER TABLE sales.orders ADD COLUMN extra int')
    run = run_tasks([env.tables_task(on_drift='update'),
                     env.tables_task(tables=['orders', 'audit'])], check=True)
    update, more = [ok(r) for r in run.results]
    assert update['changed'] and update['altered'] == ['shop.orders']
    assert more['imported'] == ['shop.audit']
    assert env.foreign_tables() == ['orders']
    assert env.dst_sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'shop.orders'::regclass"
                       " AND attname = 'extra'") == [(0,)]


# ---- errors and removal ---------------------------------------------------------------------

def test_errors_are_clear(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    version = subscriber.version()
    # an option newer than the consumer (none is newer than 18: a misplaced option instead)
    gated = [(option, since) for option, since in (('parallel_abort', 16),
                                                   ('use_scram_passthrough', 18))
             if version < since][:1]
    first = {gated[0][0]: True} if gated else {'password': 'x'}
    run = run_tasks([
        env.server_task(extra_options=first),
        env.server_task(extra_options={'user': 'x'}),
        env.mapping_task(),
        env.server_task(),
        env.task('pg_fdw_user_mappings', server=env.server, mappings=[{'role': 'nobody_here'}]),
        env.mapping_task(),
        env.tables_task(tables=['orders', 'no_such_table']),
        env.tables_task(tables=[{'name': 'x', 'columns': [{'name': 'a', 'type': 'no_such_type'}]}]),
        env.tables_task(tables=[{'name': 'x', 'columns': [
            {'name': 'a', 'type': 'int); DROP TABLE pg_class; --'}]}]),
        env.tables_task(remote_schema='no_such_schema'),
        env.task('pg_fdw_server', name=env.server, state='absent'),
    ])
    results = run.results
    if gated:
        failed(results[0], 'postgres_fdw server option %s requires PostgreSQL %d' % gated[0],
               'runs PostgreSQL %d' % version)
    else:
        failed(results[0], "option 'password' is not allowed here", 'user mapping')
    failed(results[1], "option 'user' is not allowed here", 'user mapping')
    failed(results[2], 'foreign server %s does not exist' % env.server)
    ok(results[3])
    failed(results[4], 'role nobody_here does not exist')
    ok(results[5])
    failed(results[6], 'not found in remote schema sales', 'no_such_table')
    failed(results[7], 'unknown column type(s): no_such_type')
    failed(results[8], 'invalid column type')
    failed(results[9], 'cannot read remote schema no_such_schema', env.server)
    failed(results[10], 'has 1 user mapping(s)', 'cascade: true')
    assert env.dst_sql("SELECT count(*) FROM pg_class WHERE relname = 'pg_class'") == [(1,)]


def test_absent_tables_then_server_with_cascade(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    env.dst_sql('CREATE SCHEMA shop; CREATE TABLE shop.local_table (id int)')
    run = run_tasks(env.setup_tasks(tables=['orders', 'audit']) + [
        env.tables_task(tables=['audit'], state='absent'),
        env.tables_task(tables=['audit'], state='absent'),
        env.task('pg_fdw_server', name=env.server, state='absent', cascade=True),
        env.task('pg_fdw_server', name=env.server, state='absent', cascade=True),
    ])
    assert run.rc == 0, run.output
    assert ok(run.results[3])['queries'] == ['DROP FOREIGN TABLE "shop"."audit"']
    unchanged(run.results[4])
    assert ok(run.results[5])['queries'] == ['DROP SERVER "%s" CASCADE' % env.server]
    unchanged(run.results[6])
    assert env.foreign_tables() == []
    assert env.dst_sql('SELECT count(*) FROM shop.local_table') == [(0,)]


# ---- scale --------------------------------------------------------------------------------

def _statements_logged(cluster, tasks):
    """Statements the consumer's server logged (log_statement=all) while the tasks ran."""
    start = len(cluster.log_text())
    run = run_tasks(tasks)
    assert run.rc == 0, run.output
    return [line.split('statement: ', 1)[1] for line in cluster.log_text()[start:].splitlines()
            if 'statement: ' in line]


def test_statements_do_not_grow_with_the_number_of_tables(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    env.src_sql('CREATE SCHEMA narrow; CREATE SCHEMA wide; '
                'CREATE TABLE narrow.t0 (id int); CREATE TABLE narrow.t1 (id int)')
    for (statement,) in env.src_sql("SELECT format('CREATE TABLE wide.t%s (id int, v text)', g) "
                                    'FROM generate_series(0, 79) g'):
        env.src_sql(statement)
    run = run_tasks([env.server_task(), env.mapping_task()])
    assert run.rc == 0, run.output
    counts = {}
    for schema in ('narrow', 'wide'):
        task = env.tables_task(schema='local_' + schema, remote_schema=schema)
        first = _statements_logged(subscriber, [task])
        again = _statements_logged(subscriber, [task])
        assert sum(1 for s in first if s.startswith('IMPORT FOREIGN SCHEMA')) == 2  # probe + import
        counts[schema] = (len(first), len(again))
    assert env.dst_sql("SELECT count(*) FROM pg_foreign_table ft JOIN pg_class c "
                       "ON c.oid = ft.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'local_wide'") == [(80,)]
    assert counts['narrow'] == counts['wide'], counts
    print('statements logged (import run, unchanged run): %r' % (counts,))
