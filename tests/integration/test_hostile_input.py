# -*- coding: utf-8 -*-
"""Every module fed hostile names and SQL in values, against a dedicated pair of clusters.

For each module one playbook runs one task per hostile name (``hostile.NAMES``: quotes,
semicolons, spaces, mixed case, unicode, dollar quotes, exactly 63 bytes; plus a 64-byte name)
and the test cases ``test_<module>[<name id>]`` check that name's outcome: the object exists
with exactly that name and data flows through it, or the module failed with a clear message
and created nothing. Every database of both clusters holds a ``canary`` table that the
injection attempts would drop: it must still be there after every module.

Modules that need objects made by another module use them (pg_subscription subscribes to the
publications made by pg_publication, the fdw modules map the roles made by pg_sync_role), so
data really flows through what the modules created.
"""
import psycopg2
import pytest
from psycopg2 import sql

from hostile import (ALL_KEYS, CANARY, KEYS, NAME, NAMES, SQL_VALUE, TOO_LONG, create_db, ident,
                     missing_canaries, password, plant_canary, quoted_ident, start_cluster)
from pgcluster import wait_for
from runner import run_tasks

P = 'tablesync.postgresql.'
LONG = TOO_LONG[0]
TOO_LONG_MSG = 'longer than 63 bytes'
# the row filter / value literal that hides a statement inside a string
FILTER = "v IS DISTINCT FROM '%s'" % SQL_VALUE.replace("'", "''")


# ---- clusters -------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def pair(pg_base):
    """(source, target): own clusters with room for a subscription per hostile name."""
    more = dict(max_logical_replication_workers=24, max_worker_processes=40,
                max_replication_slots=40, max_wal_senders=40)
    src = start_cluster('hostile_src', pg_base, **more)
    dst = start_cluster('hostile_dst', pg_base, **more)
    for cluster in (src, dst):
        plant_canary(cluster)
    # a login (and replication) role per hostile name on the source, with a hostile password:
    # the fdw user mappings and the subscriptions log in as them
    conn = src.connect()
    with conn.cursor() as cur:
        cur.execute("SET log_statement = 'none'")
        for key, name in NAMES:
            cur.execute(sql.SQL('CREATE ROLE {} LOGIN REPLICATION PASSWORD %s').format(ident(name)),
                        (password(key),))
    conn.close()
    yield src, dst
    dst.stop('immediate')
    src.stop('immediate')


def run(tasks, **kw):
    play = run_tasks(tasks, extra_env={'ANSIBLE_PIPELINING': '1'}, **kw)
    assert len(play.results) == len(tasks), play.output[-5000:]
    return play.results


def task(module, args, name):
    return {'name': name, P + module: args, 'ignore_errors': True}


def by_key(tasks, results, prefix=''):
    """Results of the tasks named '<prefix><key>' by key."""
    return dict((t['name'][len(prefix):], r) for t, r in zip(tasks, results)
                if t['name'].startswith(prefix))


def ok(result):
    assert not result.get('failed'), result.get('msg') or result
    return result


def refused(result, *fragments):
    assert result.get('failed'), result
    assert result.get('changed') is False, result
    for fragment in fragments:
        assert fragment in result['msg'], result['msg']
    return result['msg']


def no_injection(pair):
    assert missing_canaries(*pair) == []


def q(schema, name):
    """The playbook spelling schema.name (literal parts; none of the names holds a dot)."""
    return '%s.%s' % (schema, name)


def simple_table(cluster, db, schema, name, rows=((1, 'a'),), key_col='id'):
    cluster.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE {t} ({k} int PRIMARY KEY, '
                            'v text)').format(s=ident(schema), t=ident(schema, name),
                                              k=ident(key_col)), dbname=db)
    for row in rows:
        cluster.execute(sql.SQL('INSERT INTO {} VALUES (%s, %s)').format(ident(schema, name)),
                        row, dbname=db)


# ---- pg_publication -> pg_subscription -------------------------------------------------------

@pytest.fixture(scope='module')
def publications(pair):
    src, dst = pair
    create_db(src, 'h_repl')
    create_db(dst, 'h_repl')
    for key, name in NAMES:
        for cluster in (src, dst):
            simple_table(cluster, 'h_repl', 'public', name, rows=())
        src.execute(sql.SQL('GRANT SELECT ON {} TO {}').format(ident('public', name), ident(name)),
                    dbname='h_repl')
    tasks = []
    for key, name in NAMES + [TOO_LONG]:
        args = dict(src.login('h_repl'), name=name, comment=SQL_VALUE + name, tables=[
            {'name': q('public', name), 'where': FILTER, 'replica_identity': 'full'}])
        # the second run proves the catalog reads back what was asked for
        tasks += [task('pg_publication', args, key), task('pg_publication', args, 'again_' + key)]
    # a row filter that tries to end the statement, and one that closes the parenthesis early
    tasks.append(task('pg_publication', dict(src.login('h_repl'), name='breakout_1',
                                             tables=[{'name': q('public', NAME['space']),
                                                      'where': "true; DROP TABLE canary; --"}]),
                      'breakout_1'))
    tasks.append(task('pg_publication', dict(src.login('h_repl'), name='breakout_2',
                                             tables=[{'name': q('public', NAME['space']),
                                                      'where': "true) WITH (publish = 'insert'"}]),
                      'breakout_2'))
    results = by_key(tasks, run(tasks, diff=True))
    no_injection(pair)
    return results


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_publication(pair, publications, key):
    src, _dst = pair
    result = publications[key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        assert src.query('SELECT count(*) FROM pg_publication', dbname='h_repl')[0][0] == len(KEYS)
        return
    ok(result)
    name = NAME[key]
    rows = src.query('''
        SELECT r.prrelid::regclass = %s::regclass, pg_get_expr(r.prqual, r.prrelid),
               obj_description(p.oid, 'pg_publication')
          FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid
         WHERE p.pubname = %s''', (quoted_ident('public', name), name),
                     dbname='h_repl')
    assert len(rows) == 1 and rows[0][0], rows
    assert SQL_VALUE in rows[0][1]
    assert rows[0][2] == SQL_VALUE + name
    again = publications['again_' + key]
    assert ok(again)['changed'] is False, again['queries']


@pytest.mark.parametrize('key', ['breakout_1', 'breakout_2'])
def test_pg_publication_row_filter_cannot_break_out(pair, publications, key):
    src, _dst = pair
    refused(publications[key], 'row filter')
    assert src.query('SELECT count(*) FROM pg_publication WHERE pubname LIKE %s',
                     ('breakout%',), dbname='h_repl') == [(0,)]
    no_injection(pair)


@pytest.fixture(scope='module')
def subscriptions(pair, publications):
    src, dst = pair
    publisher = dict(host=src.host, port=src.port, dbname='h_repl')
    tasks = []
    for key, name in NAMES:
        tasks.append(task('pg_subscription', dict(
            dst.login('h_repl'), name=name, publications=[name], slot_name='hostile_%s' % key,
            publisher=dict(publisher, user=name, password=password(key),
                           application_name=SQL_VALUE),
            comment=SQL_VALUE), key))
    tasks.append(task('pg_subscription', dict(dst.login('h_repl'), name=TOO_LONG[1],
                                              publications=[NAME['space']], slot_name='hostile_64',
                                              publisher=dict(publisher, user='postgres',
                                                             password=src.password)), LONG))
    tasks.append(task('pg_subscription', dict(dst.login('h_repl'), name='bad_slot',
                                              publications=[NAME['space']],
                                              slot_name=NAME['inject_ident'],
                                              publisher=dict(publisher, user='postgres',
                                                             password=src.password)), 'bad_slot'))
    results = by_key(tasks, run(tasks))
    no_injection(pair)
    # a publication name with a backslash cannot be streamed: pg_subscription refuses it
    created = sum(1 for k in KEYS if not results[k].get('failed') and k != 'backslash')
    if created:
        try:
            wait_for(lambda: dst.query(
                "SELECT count(*) FILTER (WHERE srsubstate = 'r' AND srrelid <> %s::regclass) "
                'FROM pg_subscription_rel', (quoted_ident('public', NAME['backslash']),),
                dbname='h_repl')[0][0] == created, timeout=120, what='initial syncs done')
        except AssertionError:
            raise AssertionError('initial syncs not done: %r\n%s' % (dst.query(
                'SELECT srrelid::regclass::text, srsubstate FROM pg_subscription_rel',
                dbname='h_repl'), '\n'.join(dst.log_text().splitlines()[-40:])))
        # one transaction on the source: a row that passes the row filter, one that does not
        conn = src.connect('h_repl', autocommit=False)
        with conn.cursor() as cur:
            for _key, name in NAMES:
                cur.execute(sql.SQL('INSERT INTO {} VALUES (1, %s), (2, %s)').format(
                    ident('public', name)), ('flows', SQL_VALUE))
        conn.commit()
        conn.close()
    yield results
    for key, name in NAMES:
        if not results[key].get('failed'):
            dst.execute(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(ident(name)),
                        dbname='h_repl')


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_subscription(pair, subscriptions, key):
    src, dst = pair
    result = subscriptions[key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    if key == 'backslash':
        # PostgreSQL's walreceiver cannot stream a publication whose name holds a backslash
        refused(result, 'contains a backslash', 'rename the publication')
        assert dst.query('SELECT count(*) FROM pg_subscription WHERE subname = %s',
                         (NAME[key],), dbname='h_repl') == [(0,)]
        return
    ok(result)
    name = NAME[key]
    assert dst.query('SELECT subslotname, subpublications FROM pg_subscription WHERE subname = %s',
                     (name,), dbname='h_repl') == [('hostile_%s' % key, [name])]
    # the conninfo kept the user, password and application_name intact: rows arrive,
    # the one the row filter excludes does not
    table = ident('public', name)
    wait_for(lambda: dst.query(sql.SQL('SELECT count(*) FROM {} WHERE id = 1').format(table),
                               dbname='h_repl')[0][0] == 1, timeout=60,
             what='row replicated')
    assert dst.query(sql.SQL('SELECT id, v FROM {}').format(table), dbname='h_repl') == [(1, 'flows')]
    assert src.query('SELECT count(*) FROM pg_stat_replication WHERE application_name = %s',
                     (SQL_VALUE,))[0][0] >= 1
    no_injection(pair)


def test_pg_subscription_slot_name_is_validated(pair, subscriptions):
    refused(subscriptions['bad_slot'], 'not a valid replication slot name')
    assert pair[1].query("SELECT count(*) FROM pg_subscription WHERE subname = 'bad_slot'",
                         dbname='h_repl') == [(0,)]


# ---- pg_sync_info ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sync_info(pair, subscriptions):
    """Everything on both sides (no prefix), and prefixes that are hostile names themselves."""
    src, dst = pair
    prefixes = ('inject_literal', 'backslash', 'max63')
    tasks = [task('pg_sync_info', dict(src.login('h_repl'), gather=['publications', 'slots']), 'pub'),
             task('pg_sync_info', dict(dst.login('h_repl'), gather=['subscriptions']), 'sub'),
             task('pg_sync_info', dict(src.login('h_repl'), gather=['publications'],
                                       name_prefix=TOO_LONG[1]), LONG)]
    tasks += [task('pg_sync_info', dict(src.login('h_repl'), gather=['publications'],
                                        name_prefix=NAME[k]), 'prefix_' + k) for k in prefixes]
    results = by_key(tasks, run(tasks))
    no_injection(pair)
    return results


def _names(items):
    if isinstance(items, dict):
        return sorted(items)
    return sorted(i['name'] for i in items)


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_sync_info(sync_info, key):
    if key == LONG:
        # a prefix that matches nothing is no error
        assert _names(ok(sync_info[key])['publications']) == []
        return
    name = NAME[key]
    pubs = ok(sync_info['pub'])
    assert pubs['changed'] is False
    assert name in _names(pubs['publications'])
    # the slot of the subscription to it (the slot names are ours, the database is hostile-free)
    subs = ok(sync_info['sub'])['subscriptions']
    if key == 'backslash':  # pg_subscription refuses it: no subscription to report
        assert name not in (subs if isinstance(subs, dict) else [s['name'] for s in subs])
    else:
        sub = subs[name] if isinstance(subs, dict) else [s for s in subs if s['name'] == name][0]
        assert sub['publications'] == [name]
    if 'prefix_' + key in sync_info:
        # the prefix is literal (no LIKE wildcards, no quoting problems): exactly this one matches
        assert _names(ok(sync_info['prefix_' + key])['publications']) == [name]


# ---- pg_sync_role -> fdw modules ---------------------------------------------------------------

@pytest.fixture(scope='module')
def sync_roles(pair):
    _src, dst = pair
    create_db(dst, 'h_role')
    for _key, name in NAMES:
        simple_table(dst, 'h_role', name, name)
    tasks = [task('pg_sync_role', dict(dst.login('h_role'), name=name, password=password(key),
                                       select_tables=[q(name, name)]), key)
             for key, name in NAMES]
    tasks.append(task('pg_sync_role', dict(dst.login('h_role'), name=TOO_LONG[1],
                                           password=password(LONG)), LONG))
    results = by_key(tasks, run(tasks, diff=True))
    no_injection(pair)
    return results


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_sync_role(pair, sync_roles, key):
    _src, dst = pair
    result = sync_roles[key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        assert dst.query('SELECT count(*) FROM pg_roles WHERE rolname = %s',
                         (TOO_LONG[1].encode('utf-8')[:63].decode('utf-8', 'ignore'),)) == [(0,)]
        return
    ok(result)
    name = NAME[key]
    assert password(key) not in str(result)
    # the role logs in with exactly that name and password and reads exactly its table
    conn = psycopg2.connect(host=dst.host, port=dst.port, user=name, password=password(key),
                            dbname='h_role')
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL('SELECT v FROM {}').format(ident(name, name)))
            assert cur.fetchall() == [('a',)]
            cur.execute('SELECT current_user')
            assert cur.fetchone() == (name,)
    finally:
        conn.close()
    assert dst.query("SELECT count(*) FROM information_schema.role_table_grants "
                     "WHERE grantee = %s", (name,), dbname='h_role') == [(1,)]


@pytest.fixture(scope='module')
def fdw(pair, sync_roles):
    """Foreign server, user mappings (the local roles made by pg_sync_role, and postgres),
    imported foreign tables and local copies, one set per hostile name."""
    src, dst = pair
    create_db(src, 'h_fdw')
    create_db(dst, 'h_fdw')
    for key, name in NAMES:
        simple_table(src, 'h_fdw', name, name, rows=((1, 'a'), (2, SQL_VALUE)), key_col=name)
        src.execute(sql.SQL('GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON {t} TO {r}').format(
            s=ident(name), t=ident(name, name), r=ident(name)), dbname='h_fdw')
    login = dst.login('h_fdw')
    tasks = []
    for key, name in NAMES + [TOO_LONG]:
        pw = password(key)
        tasks += [
            task('pg_fdw_server', dict(login, name=name, comment=SQL_VALUE, options=dict(
                host=src.host, port=src.port, dbname='h_fdw', application_name=SQL_VALUE,
                fetch_size=100)), 'server_' + key),
            task('pg_fdw_user_mappings', dict(login, server=name, mappings=[
                dict(role=name, user=name, password=pw),
                dict(role='postgres', user=name, password=pw)]), 'mappings_' + key),
            task('pg_foreign_tables', dict(login, server=name, schema=name, remote_schema=name,
                                           tables=[name]), 'tables_' + key),
            task('pg_foreign_table_copies', dict(login, copies=[dict(
                name=q('copies', name), source=q(name, name), where=FILTER)]), 'copies_' + key),
        ]
    tasks.append(task('pg_foreign_table_copies', dict(login, copies=[dict(
        name=q('copies', 'breakout'), source=q(NAME['space'], NAME['space']),
        where="true) ; DROP TABLE canary; --")]), 'copies_breakout'))
    tasks.append(task('pg_fdw_server', dict(login, name='bad_option', options=dict(
        host=src.host, dbname='h_fdw', **{"x' = 'y'); DROP TABLE canary; --": 'z'})),
        'server_badoption'))
    dst.execute('CREATE SCHEMA copies', dbname='h_fdw')
    results = run(tasks)
    no_injection(pair)
    return dict((kind, by_key(tasks, results, kind + '_'))
                for kind in ('server', 'mappings', 'tables', 'copies'))


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_fdw_server(pair, fdw, key):
    _src, dst = pair
    result = fdw['server'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    options = dst.query('SELECT srvoptions, obj_description(oid, %s) FROM pg_foreign_server '
                        'WHERE srvname = %s', ('pg_foreign_server', NAME[key]), dbname='h_fdw')
    assert len(options) == 1
    assert 'application_name=%s' % SQL_VALUE in options[0][0]
    assert options[0][1] == SQL_VALUE


def test_pg_fdw_server_option_names_are_not_sql(pair, fdw):
    msg = refused(fdw['server']['badoption'])
    assert 'DROP TABLE' in msg or 'option' in msg
    assert pair[1].query("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'bad_option'",
                         dbname='h_fdw') == [(0,)]


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_fdw_user_mappings(pair, fdw, key):
    _src, dst = pair
    result = fdw['mappings'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    name = NAME[key]
    assert password(key) not in str(result)
    assert sorted(dst.query('SELECT usename FROM pg_user_mappings WHERE srvname = %s', (name,),
                            dbname='h_fdw')) == sorted([(name,), ('postgres',)])
    # the hostile local role reads through its own mapping (hostile remote user and password)
    dst.execute(sql.SQL('GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} '
                        'TO {r}').format(s=ident(name), r=ident(name)), dbname='h_fdw')
    conn = psycopg2.connect(host=dst.host, port=dst.port, user=name, password=password(key),
                            dbname='h_fdw')
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL('SELECT v FROM {} ORDER BY 1').format(ident(name, name)))
            assert cur.fetchall() == sorted([('a',), (SQL_VALUE,)])
    finally:
        conn.close()


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_foreign_tables(pair, fdw, key):
    _src, dst = pair
    result = fdw['tables'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    name = NAME[key]
    assert dst.query("SELECT c.relkind, a.attname FROM pg_class c JOIN pg_attribute a "
                     "ON a.attrelid = c.oid AND a.attnum = 1 WHERE c.oid = %s::regclass",
                     (quoted_ident(name, name),),
                     dbname='h_fdw') == [('f', name)]
    assert dst.query(sql.SQL('SELECT count(*) FROM {}').format(ident(name, name)),
                     dbname='h_fdw') == [(2,)]


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_foreign_table_copies(pair, fdw, key):
    _src, dst = pair
    result = fdw['copies'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    name = NAME[key]
    # the materialized view has exactly that name and the row filter's literal kept its text
    assert dst.query(sql.SQL('SELECT v FROM {}').format(ident('copies', name)),
                     dbname='h_fdw') == [('a',)]
    for statement in result['refresh_sql']:
        dst.execute(statement, dbname='h_fdw')
    no_injection(pair)


def test_pg_foreign_table_copies_row_filter_cannot_break_out(pair, fdw):
    refused(fdw['copies']['breakout'])
    assert pair[1].query("SELECT to_regclass('copies.breakout')", dbname='h_fdw') == [(None,)]


# ---- pg_target_tables, pg_table_compare, pg_sequence_sync ----------------------------------

@pytest.fixture(scope='module')
def two_sided(pair):
    src, dst = pair
    create_db(src, 'h_two')
    create_db(dst, 'h_two')
    source = dict(host=src.host, port=src.port, dbname='h_two', user=src.user,
                  password=src.password)
    for cluster in (src, dst):
        cluster.execute('CREATE SCHEMA seqs', dbname='h_two')
    for key, name in NAMES:
        # source: a table whose schema, name and key column are the hostile name, a sequence
        src.execute(sql.SQL(
            'CREATE SCHEMA {s}; CREATE TABLE {t} ({c} serial PRIMARY KEY, v text); '
            'CREATE SEQUENCE {seq}; CREATE TABLE public.{t2} ({c} int PRIMARY KEY, v text)').format(
                s=ident(name), t=ident(name, name), c=ident(name), seq=ident('seqs', name),
                t2=ident(name)), dbname='h_two')
        src.execute(sql.SQL('INSERT INTO {} (v) VALUES (%s), (%s), (%s)').format(
            ident(name, name)), ('a', 'b', SQL_VALUE), dbname='h_two')
        src.execute(sql.SQL("SELECT setval(%s, 42)"), (quoted_ident('seqs', name),), dbname='h_two')
        dst.execute(sql.SQL('CREATE SEQUENCE {seq}; CREATE TABLE public.{t2} ({c} int PRIMARY KEY, '
                            'v text)').format(seq=ident('seqs', name), t2=ident(name),
                                              c=ident(name)), dbname='h_two')
        for cluster in (src, dst):
            cluster.execute(sql.SQL('INSERT INTO public.{} VALUES (1, %s), (2, %s)').format(
                ident(name)), ('x', SQL_VALUE), dbname='h_two')
    login = dst.login('h_two')
    tasks = []
    for key, name in NAMES + [TOO_LONG]:
        tasks += [
            task('pg_target_tables', dict(login, source=source, tables=[q(name, name)]),
                 'target_' + key),
            task('pg_table_compare', dict(login, source=source, tables=[
                {'name': q('public', name), 'where': FILTER}]), 'compare_' + key),
            task('pg_sequence_sync', dict(login, source=source, tables=[q('public', name)],
                                          sequences=[q('seqs', name)]), 'sequence_' + key),
        ]
    tasks.append(task('pg_table_compare', dict(login, source=source, tables=[
        {'name': q('public', NAME['space']), 'where': 'true); DROP TABLE canary; --'}]),
        'compare_breakout'))
    results = run(tasks)
    no_injection(pair)
    return dict((kind, by_key(tasks, results, kind + '_'))
                for kind in ('target', 'compare', 'sequence'))


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_target_tables(pair, two_sided, key):
    src, dst = pair
    result = two_sided['target'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    name = NAME[key]
    columns = ('SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM '
               'pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 '
               'AND NOT a.attisdropped ORDER BY a.attnum')
    regclass = quoted_ident(name, name)
    want = src.query(columns, (regclass,), dbname='h_two')
    assert want and dst.query(columns, (regclass,), dbname='h_two') == want


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_table_compare(two_sided, key):
    result = two_sided['compare'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    assert result['equal'] is True, result
    (table,) = result['tables'].values()
    # the row filter (a literal holding SQL) kept the first row only, on both sides
    assert (table['source_rows'], table['target_rows']) == (1, 1), table


def test_pg_table_compare_row_filter_cannot_break_out(pair, two_sided):
    refused(two_sided['compare']['breakout'])
    no_injection(pair)


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_sequence_sync(pair, two_sided, key):
    _src, dst = pair
    result = two_sided['sequence'][key]
    if key == LONG:
        refused(result, TOO_LONG_MSG)
        return
    ok(result)
    name = NAME[key]
    assert dst.query(sql.SQL('SELECT last_value FROM {}').format(ident('seqs', name)),
                     dbname='h_two') == [(42,)]


# ---- pg_sync_trigger ------------------------------------------------------------------------

WRITER = 'hostile writer "w"'


@pytest.fixture(scope='module')
def triggers(pair):
    src, dst = pair
    create_db(src, 'h_trg')
    create_db(dst, 'h_trg')
    conn = dst.connect()
    with conn.cursor() as cur:
        cur.execute("SET log_statement = 'none'")
        cur.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD %s').format(ident(WRITER)),
                    (password('writer'),))
    conn.close()
    for _key, name in NAMES:
        for cluster in (src, dst):
            cluster.execute(sql.SQL('CREATE SCHEMA {s}; CREATE TABLE {t} ({c} int PRIMARY KEY, '
                                    '{v} text)').format(s=ident(name), t=ident(name, name),
                                                        c=ident(name), v=ident('v')),
                            dbname='h_trg')
        dst.execute(sql.SQL('GRANT USAGE ON SCHEMA {s} TO {w}; GRANT ALL ON {t} TO {w}').format(
            s=ident(name), t=ident(name, name), w=ident(WRITER)), dbname='h_trg')
        src.execute(sql.SQL('INSERT INTO {} VALUES (1, %s)').format(ident(name, name)),
                    (SQL_VALUE,), dbname='h_trg')
    target = dict(host=dst.host, port=dst.port, dbname='h_trg', user=WRITER,
                  password=password('writer'))
    login = src.login('h_trg')
    tasks = [task('pg_sync_trigger', dict(login, name='hostile', mode='immediate', backfill=True,
                                          target=target, tables=[q(n, n) for _k, n in NAMES]),
                  'set')]
    tasks += [task('pg_sync_trigger', dict(login, name='hostile_long', target=target,
                                           tables=[q('public', TOO_LONG[1])]), 'table_' + LONG)]
    tasks += [task('pg_sync_trigger', dict(login, name=name, target=target,
                                           tables=[q('public', CANARY)]), 'setname_' + key)
              for key, name in NAMES]
    results = run(tasks, diff=True)
    no_injection(pair)
    found = by_key(tasks, results)
    if not found['set'].get('failed'):
        conn = src.connect('h_trg', autocommit=False)
        with conn.cursor() as cur:
            for _key, name in NAMES:
                cur.execute(sql.SQL('INSERT INTO {} VALUES (2, %s)').format(ident(name, name)),
                            ("it's $$ \\ " + name,))
                cur.execute(sql.SQL('UPDATE {} SET {} = 10 WHERE {} = 1').format(
                    ident(name, name), ident(name), ident(name)))
        conn.commit()
        conn.close()
    yield found
    if not found['set'].get('failed'):
        src.execute('DROP SCHEMA IF EXISTS tablesync CASCADE', dbname='h_trg')


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_sync_trigger(pair, triggers, key):
    src, dst = pair
    if key == LONG:
        refused(triggers['table_' + LONG], TOO_LONG_MSG)
        return
    ok(triggers['set'])
    name = NAME[key]
    table = ident(name, name)
    order = sql.SQL('SELECT * FROM {} ORDER BY 1').format(table)
    assert src.query(order, dbname='h_trg') == [(2, "it's $$ \\ " + name), (10, SQL_VALUE)]
    # immediate mode: the committed insert and update are on the target, byte for byte
    assert dst.query(order, dbname='h_trg') == src.query(order, dbname='h_trg')
    # a hostile set name is refused clearly (it becomes part of trigger and function names)
    refused(triggers['setname_' + key], 'name')
    assert password('writer') not in str(triggers['set'])


# ---- pg_settings ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def settings(pair):
    """ALTER SYSTEM with hostile values (a search_path of hostile schema names, SQL in a string
    setting) and hostile setting names, on the target cluster; reset afterwards."""
    _src, dst = pair
    login = dst.login()
    tasks = []
    for key, name in NAMES + [TOO_LONG]:
        value = '"%s", public' % name.replace('"', '""')
        setting = {'search_path': value, 'application_name': SQL_VALUE}
        tasks += [task('pg_settings', dict(login, settings=setting), 'value_' + key),
                  task('pg_settings', dict(login, settings=setting), 'again_' + key)]
    # hostile setting names, all in one call: each is an unknown setting, none is SQL
    tasks.append(task('pg_settings', dict(login, settings=dict((n, 'on') for _k, n in NAMES)),
                      'names'))
    tasks.append(task('pg_settings', dict(login, settings={TOO_LONG[1]: 'on'}), 'names64'))
    results = run(tasks, diff=True)
    no_injection(pair)
    conf = open('%s/postgresql.auto.conf' % dst.datadir).read()
    for statement in ('ALTER SYSTEM RESET search_path', 'ALTER SYSTEM RESET application_name',
                      'SELECT pg_reload_conf()'):
        dst.execute(statement)
    found = dict((kind, by_key(tasks, results, kind + '_')) for kind in ('value', 'again'))
    found['names'], found['names64'] = results[-2:]
    return found, conf


@pytest.mark.parametrize('key', ALL_KEYS)
def test_pg_settings(settings, key):
    found, conf = settings
    # a hostile setting name is an unknown setting, not SQL
    if key == LONG:
        refused(found['names64'], 'Unknown setting', TOO_LONG[1])
    else:
        refused(found['names'], 'Unknown settings', NAME[key])
    if key == LONG:
        # a 64-byte schema name in a search_path is an ordinary value (PostgreSQL truncates
        # nothing stored in a setting): it is accepted like any other
        ok(found['value'][key])
        assert "search_path = '\"%s\", public'" % NAME[key] in conf, conf
        return
    ok(found['value'][key])
    # the value read back equals what was asked for: the second run changes nothing
    assert ok(found['again'][key])['changed'] is False, found['again'][key]['queries']
