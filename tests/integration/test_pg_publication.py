# -*- coding: utf-8 -*-
"""pg_publication against real PostgreSQL clusters, run through ansible-playbook.

Every test works in its own fresh database of the ``publisher`` cluster. ``snapshot()`` reads
everything the module could change (publications with their oid, tables, column lists, row
filters, schemas, comments, owners, replica identities) to prove check mode and failed runs
change nothing.
"""
import uuid

import pytest

from pgcluster import wait_for
from runner import run_tasks

MODULE = 'tablesync.postgresql.pg_publication'

SNAPSHOT = '''
SELECT json_build_object(
  'publications', (SELECT json_agg(json_build_object(
        'oid', p.oid, 'name', p.pubname, 'owner', pg_get_userbyid(p.pubowner),
        'all', p.puballtables, 'ops', ARRAY[p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate],
        'viaroot', p.pubviaroot, 'comment', obj_description(p.oid, 'pg_publication'))
        ORDER BY p.pubname) FROM pg_publication p),
  'tables', (SELECT json_agg(json_build_object(
        'pub', p.pubname, 'rel', r.prrelid::regclass::text, 'attrs', r.prattrs::int2[],
        'qual', pg_get_expr(r.prqual, r.prrelid)) ORDER BY p.pubname, r.prrelid::regclass::text)
        FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid),
  'schemas', (SELECT json_agg(json_build_object('pub', p.pubname, 'nsp', n.pnnspid::regnamespace::text)
        ORDER BY 1) FROM pg_publication_namespace n JOIN pg_publication p ON p.oid = n.pnpubid),
  'identity', (SELECT json_agg(json_build_object('rel', c.oid::regclass::text, 'ident', c.relreplident)
        ORDER BY c.oid::regclass::text)
        FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace::regnamespace::text
        NOT IN ('pg_catalog', 'information_schema', 'pg_toast')))
'''


class Db(object):
    """A fresh database on a cluster, with helpers to run the module against it."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name

    def sql(self, text, params=None):
        return self.cluster.query(text, params, dbname=self.name)

    def snapshot(self):
        return self.sql(SNAPSHOT)[0][0]

    def args(self, **kw):
        args = self.cluster.login(self.name)
        args.update(kw)
        return args

    def run(self, *steps, **kw):
        """Run one task per step (dict of module options) in one playbook; per-task results."""
        tasks = [{'name': 'step %d' % i, MODULE: self.args(**step), 'ignore_errors': True}
                 for i, step in enumerate(steps)]
        play = run_tasks(tasks, **kw)
        assert len(play.results) == len(steps), play.output
        return play.results

    def pub(self, **step):
        check = step.pop('_check', False)
        return self.run(step, check=check, diff=True)[0]

    def publication(self, name):
        """The publication as pg_publication_tables and the catalog show it."""
        rows = self.sql('''
            SELECT r.prrelid::regclass::text, ARRAY(SELECT attname FROM pg_attribute
                   WHERE attrelid = r.prrelid AND attnum = ANY (r.prattrs::int2[]) ORDER BY attnum),
                   pg_get_expr(r.prqual, r.prrelid)
              FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
             WHERE p.pubname = %s ORDER BY 1''', (name,))
        return [(rel, cols or None, qual) for rel, cols, qual in rows]


def make_db(cluster):
    name = 'pubtest_%s' % uuid.uuid4().hex[:10]
    cluster.execute('CREATE DATABASE %s' % name)
    return Db(cluster, name)


@pytest.fixture
def db(publisher):
    d = make_db(publisher)
    yield d
    publisher.execute('DROP DATABASE %s WITH (FORCE)' % d.name)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def failed(result):
    assert result.get('failed'), result
    assert result['changed'] is False
    return result['msg']


def assert_idempotent(result):
    ok(result)
    assert result['changed'] is False, result['queries']
    assert result['queries'] == []


BASE_SCHEMA = '''
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, customer text, amount numeric, region text);
CREATE TABLE sales.customers (id int PRIMARY KEY, name text, country text, secret text);
CREATE TABLE public.plain (id int PRIMARY KEY, v int);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id int PRIMARY KEY, total numeric);
CREATE TABLE public.nokey (a int, b int);
CREATE TABLE public.parted (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (1000);
'''


# ------------------------------------------------------------------------------------------
# Creation in every form, idempotence
# ------------------------------------------------------------------------------------------

def test_create_each_form_then_no_change(db):
    db.sql(BASE_SCHEMA)
    forms = [
        dict(name='p_tables', tables=['sales.orders', 'public.plain']),
        dict(name='p_filter', tables=[{'name': 'sales.customers', 'columns': ['name', 'id', 'country'],
                                       'where': "country = 'DE' AND id > 10"}],
             publish=['insert']),
        dict(name='p_schemas', schemas=['sales', 'billing'], publish=['insert', 'update']),
        dict(name='p_mixed', tables=[{'name': 'public.plain', 'where': 'id > 100'}], schemas=['billing']),
        dict(name='p_all', all_tables=True, publish=['insert', 'truncate']),
        dict(name='p_options', tables=['sales.orders'], owner='postgres', comment="Sales 'feed'",
             publish_via_partition_root=True),
        dict(name='p_parted', tables=[{'name': 'public.parted', 'columns': ['id'], 'where': 'id > 5'}],
             publish_via_partition_root=True),
    ]
    results = db.run(*(forms + forms))
    for result in results[:len(forms)]:
        ok(result)
        assert result['changed'] is True and result['exists'] is True
        assert result['diff']['before'] == {}
    for result in results[len(forms):]:
        assert_idempotent(result)

    assert db.publication('p_tables') == [('plain', None, None), ('sales.orders', None, None)]
    assert db.publication('p_filter') == [
        ('sales.customers', ['id', 'name', 'country'], "((country = 'DE'::text) AND (id > 10))")]
    assert db.sql("SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables FROM pg_publication "
                  "WHERE pubname = 'p_all'") == [(True, False, False, True, True)]
    assert db.sql("SELECT array_agg(pnnspid::regnamespace::text ORDER BY 1) FROM pg_publication_namespace n "
                  "JOIN pg_publication p ON p.oid = n.pnpubid WHERE pubname = 'p_schemas'") == [(['billing', 'sales'],)]
    assert db.publication('p_mixed') == [('plain', None, '(id > 100)')]
    assert db.sql("SELECT pubviaroot, obj_description(oid, 'pg_publication') FROM pg_publication "
                  "WHERE pubname = 'p_options'") == [(True, "Sales 'feed'")]
    assert db.publication('p_parted') == [('parted', ['id'], '(id > 5)')]

    publication = results[1]['publication']
    assert publication == {
        'name': 'p_filter', 'owner': 'postgres', 'all_tables': False,
        'tables': [{'name': 'sales.customers', 'columns': ['id', 'name', 'country'],
                    'where': "((country = 'DE'::text) AND (id > 10))"}],
        'schemas': [], 'publish': ['insert'], 'publish_via_partition_root': False, 'comment': None,
        # PostgreSQL 18+: the server's value; before, None (not a publication property)
        'publish_generated_columns': 'none' if db.cluster.version() >= 18 else None,
    }
    assert results[len(forms) + 1]['publication'] == publication


# ------------------------------------------------------------------------------------------
# Changing every option in place
# ------------------------------------------------------------------------------------------

def test_alter_every_option(db):
    db.sql(BASE_SCHEMA + "CREATE ROLE pub_owner_x; CREATE SCHEMA extra; CREATE TABLE extra.t (id int PRIMARY KEY);")
    name = 'p_alter'
    orders = {'name': 'sales.orders', 'columns': ['id', 'amount'], 'where': 'amount > 100'}
    ins = ['insert', 'truncate']  # row filters on non-key columns: no update/delete
    steps = [
        dict(name=name, publish=ins, tables=['sales.orders']),
        dict(name=name, publish=ins, tables=['sales.orders', 'public.plain']),                  # add
        dict(name=name, publish=ins, tables=['public.plain']),                                  # drop
        dict(name=name, publish=ins, tables=['public.plain', orders]),                          # add, filtered
        dict(name=name, publish=ins, tables=['public.plain', dict(orders, where='amount > 200')]),
        dict(name=name, publish=ins, tables=['public.plain', dict(orders, columns=['id', 'region', 'amount'],
                                                                  where='amount > 200')]),      # columns
        dict(name=name, publish=ins, tables=['public.plain', dict(orders, columns=None, where='amount > 200')]),
        dict(name=name, publish=ins, tables=['public.plain', 'sales.orders']),                  # drop filter
        dict(name=name, publish=ins, schemas=['extra']),                                        # add schema
        dict(name=name, publish=ins, schemas=[]),                                               # drop schema
        dict(name=name, publish=['insert', 'delete']),
        dict(name=name, publish=['insert', 'delete'], publish_via_partition_root=True),
        dict(name=name, publish=['insert', 'delete'], owner='pub_owner_x'),
        dict(name=name, publish=['insert', 'delete'], comment='first'),
        dict(name=name, publish=['insert', 'delete'], comment=''),
        dict(name=name, publish=['insert', 'delete']),                                          # no change
    ]
    r = db.run(*steps)
    for result in r[:-1]:
        ok(result)
        assert result['changed'] is True, result
    assert_idempotent(r[-1])
    tables = [[(t['name'], t['columns'], t['where']) for t in x['publication']['tables']] for x in r]
    assert tables[1] == [('public.plain', None, None), ('sales.orders', None, None)]
    assert tables[2] == [('public.plain', None, None)]
    assert tables[3] == [('public.plain', None, None), ('sales.orders', ['id', 'amount'], '(amount > (100)::numeric)')]
    assert tables[4][1] == ('sales.orders', ['id', 'amount'], '(amount > (200)::numeric)')
    assert tables[5][1] == ('sales.orders', ['id', 'amount', 'region'], '(amount > (200)::numeric)')
    assert tables[6][1] == ('sales.orders', None, '(amount > (200)::numeric)')
    assert tables[7][1] == ('sales.orders', None, None)
    assert r[4]['queries'] == [
        'ALTER PUBLICATION "p_alter" DROP TABLE ONLY "sales"."orders"',
        'ALTER PUBLICATION "p_alter" ADD TABLE ONLY "sales"."orders" ("id", "amount") WHERE (amount > 200)']
    assert r[8]['publication']['schemas'] == ['extra'] and r[8]['queries'] == [
        'ALTER PUBLICATION "p_alter" ADD TABLES IN SCHEMA "extra"']
    assert r[9]['publication']['schemas'] == []
    assert r[10]['publication']['publish'] == ['insert', 'delete']
    assert r[11]['publication']['publish_via_partition_root'] is True
    assert r[12]['publication']['owner'] == 'pub_owner_x'
    assert r[13]['publication']['comment'] == 'first'
    assert r[14]['publication']['comment'] is None
    assert r[14]['diff'] == {'before': r[13]['publication'], 'after': r[14]['publication']}
    assert db.sql("SELECT pg_get_userbyid(pubowner), pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot, "
                  "obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
                  (name,)) == [('pub_owner_x', True, False, True, False, True, None)]


def test_equivalent_filter_spellings_are_no_change(db):
    db.sql(BASE_SCHEMA)
    first = {'name': 'sales.customers', 'where': "country IN ('DE', 'AT') and name like 'A%'"}
    again = {'name': 'sales.customers', 'where': "(country = ANY (ARRAY['DE'::text, 'AT'::text])) AND  (name ~~ 'A%'::text)"}
    r = db.run(dict(name='p_eq', tables=[first], publish=['insert']),
               dict(name='p_eq', tables=[first], publish=['insert']),
               dict(name='p_eq', tables=[again], publish=['insert']))
    ok(r[0])
    assert_idempotent(r[1])
    assert_idempotent(r[2])


def test_all_tables_and_list_conversions_recreate(db):
    db.sql(BASE_SCHEMA + 'CREATE ROLE pub_conv_owner;')
    ins = ['insert']  # public.nokey has no replica identity: keep FOR ALL TABLES insert-only
    r = db.run(dict(name='p_conv', tables=['public.plain'], owner='pub_conv_owner', comment='kept', publish=ins),
               dict(name='p_conv', all_tables=True, publish=ins),
               dict(name='p_conv', all_tables=True, publish=ins),
               dict(name='p_conv', tables=['sales.orders'], publish=ins),
               dict(name='p_conv', all_tables=True, publish=ins),
               dict(name='p_conv', all_tables=False, publish=ins))
    ok(r[0])
    assert r[1]['recreated'] is True and r[1]['queries'] == [
        'DROP PUBLICATION "p_conv"', "CREATE PUBLICATION \"p_conv\" FOR ALL TABLES WITH (publish = 'insert')",
        'ALTER PUBLICATION "p_conv" OWNER TO "pub_conv_owner"', "COMMENT ON PUBLICATION \"p_conv\" IS 'kept'"]
    assert r[1]['publication']['all_tables'] is True
    assert r[1]['publication']['owner'] == 'pub_conv_owner' and r[1]['publication']['comment'] == 'kept'
    assert_idempotent(r[2])
    assert r[3]['recreated'] is True
    assert [t['name'] for t in r[3]['publication']['tables']] == ['sales.orders']
    assert r[5]['recreated'] is True and r[5]['publication']['tables'] == []
    assert r[5]['publication']['all_tables'] is False
    assert db.sql("SELECT pg_get_userbyid(pubowner), obj_description(oid, 'pg_publication'), puballtables "
                  "FROM pg_publication") == [('pub_conv_owner', 'kept', False)]


def test_absent(db):
    db.sql(BASE_SCHEMA)
    r = db.run(dict(name='p_gone', tables=['public.plain']),
               dict(name='p_gone', state='absent', cascade=True),
               dict(name='p_gone', state='absent'))
    ok(r[0])
    assert r[1]['changed'] is True and r[1]['exists'] is False
    assert r[1]['queries'] == ['DROP PUBLICATION "p_gone" CASCADE']
    assert r[1]['diff']['after'] == {} and r[1]['diff']['before']['name'] == 'p_gone'
    assert_idempotent(r[2])
    assert db.sql('SELECT count(*) FROM pg_publication') == [(0,)]


# ------------------------------------------------------------------------------------------
# Check mode
# ------------------------------------------------------------------------------------------

def test_check_mode_changes_nothing(db):
    db.sql(BASE_SCHEMA)
    ok(db.pub(name='p_check', tables=['sales.orders', {'name': 'sales.customers', 'columns': ['id', 'name']}],
              comment='before'))
    before = db.snapshot()
    changes = [
        dict(name='p_check', tables=['public.plain', {'name': 'sales.customers', 'where': 'id > 5'}],
             schemas=['billing'], publish=['insert', 'update'], comment='after', owner='postgres'),
        dict(name='p_check', all_tables=True, replica_identity='full'),
        dict(name='p_check', tables=['public.nokey'], replica_identity='full'),
        dict(name='p_check', state='absent'),
        dict(name='p_new', tables=[{'name': 'public.nokey', 'replica_identity': 'full', 'where': 'a > 1'}]),
    ]
    r = db.run(*changes, check=True, diff=True)
    for result in r:
        ok(result)
        assert result['changed'] is True and result['queries']
    assert db.snapshot() == before
    assert r[0]['publication'] == {
        'name': 'p_check', 'owner': 'postgres', 'all_tables': False,
        'tables': [{'name': 'public.plain', 'columns': None, 'where': None},
                   {'name': 'sales.customers', 'columns': None, 'where': 'id > 5'}],
        'schemas': ['billing'], 'publish': ['insert', 'update'], 'publish_via_partition_root': False,
        'publish_generated_columns': 'none' if db.cluster.version() >= 18 else None,
        'comment': 'after'}
    assert r[1]['recreated'] is True and r[1]['publication']['all_tables'] is True
    assert r[1]['replica_identity_changes'] == [{'table': 'public.nokey', 'replica_identity': 'full'}]
    assert r[2]['queries'][0] == 'ALTER TABLE ONLY "public"."nokey" REPLICA IDENTITY FULL'
    assert r[3]['exists'] is False and r[3]['queries'] == ['DROP PUBLICATION "p_check"']
    assert r[4]['exists'] is True and r[4]['diff']['before'] == {}
    # the same changes for real give what check mode predicted
    real = db.run(changes[0], diff=True)[0]
    assert real['queries'] == r[0]['queries']
    assert dict(real['publication'], tables=None) == dict(r[0]['publication'], tables=None)


def test_check_mode_sends_no_change_to_the_server(db):
    """The server log (every statement is logged) shows only the read-only inspection."""
    db.sql(BASE_SCHEMA)
    ok(db.pub(name='p_ro', tables=['public.plain']))
    marker = 'check-mode-marker-%s' % uuid.uuid4().hex
    db.sql('SELECT %s', (marker,))
    r = db.pub(name='p_ro', tables=[{'name': 'sales.customers', 'where': 'id > 1'}, 'public.nokey'],
               replica_identity='full', comment='changed', _check=True)
    ok(r)
    assert r['queries'][0] == 'ALTER TABLE ONLY "public"."nokey" REPLICA IDENTITY FULL'
    log = db.cluster.log_text()
    tail = log[log.rindex(marker):]
    assert 'SET TRANSACTION READ ONLY' in tail and 'EXPLAIN' in tail
    for word in ('CREATE PUBLICATION', 'ALTER PUBLICATION', 'ALTER TABLE', 'COMMENT ON', 'DROP '):
        assert word not in tail


# ------------------------------------------------------------------------------------------
# Errors, each message
# ------------------------------------------------------------------------------------------

def test_missing_objects_all_named(db):
    db.sql(BASE_SCHEMA + 'CREATE VIEW public.v AS SELECT 1 AS x; CREATE UNLOGGED TABLE public.u (id int PRIMARY KEY);')
    msg = failed(db.pub(name='p_err', tables=['public.nope', 'Sales.orders', 'public.v', 'public.u', 'sales.orders'],
                        schemas=['nosuch', 'billing']))
    assert msg == ('Cannot publish: tables that do not exist: public.nope, Sales.orders; relations that are '
                   'not tables (views, sequences, foreign tables... cannot be published): public.v; unlogged '
                   'or temporary tables (cannot be published): public.u; schemas that do not exist: nosuch.')


ERROR_CASES = [
    (dict(tables=['public.nokey']),
     'refuses every UPDATE and DELETE on these tables: no replica identity: public.nokey (no primary key).'),
    (dict(tables=[{'name': 'sales.customers', 'where': "country = 'DE'"}]),
     'a row filter may only use replica identity columns, or PostgreSQL refuses UPDATE/DELETE on the table: '
     'sales.customers (replica identity columns: id; with only those, PostgreSQL says: column "country" does not exist)'),
    (dict(tables=[{'name': 'sales.customers', 'columns': ['name', 'country']}]),
     'column list without every replica identity column: sales.customers lacks id'),
    (dict(tables=[{'name': 'sales.customers', 'columns': ['id', 'nme', 'cuntry']}]),
     'Unknown columns in column lists: sales.customers has no column nme, cuntry.'),
    (dict(tables=[{'name': 'sales.customers', 'where': 'nme = 1'}], publish=['insert']),
     'Cannot publish: invalid row filter for sales.customers: column "nme" does not exist.'),
    (dict(tables=[{'name': 'sales.customers', 'where': 'id + 1'}], publish=['insert']),
     'argument of WHERE must be type boolean, not type integer'),
    (dict(tables=[{'name': 'sales.customers', 'where': 'id > 1); DROP TABLE sales.orders; --'}]),
     'closes a parenthesis it did not open'),
    (dict(tables=[{'name': 'sales.customers', 'columns': ['id']}], schemas=['billing']),
     'column lists cannot be used in a publication that also publishes schemas'),
    (dict(tables=['public.plain'], owner='nobody_here'), 'Role nobody_here (owner) does not exist.'),
    (dict(all_tables=True, tables=['public.plain']), 'all_tables: true cannot be combined with tables or schemas'),
    (dict(tables=['public.' + 'x' * 64]), 'is longer than 63 bytes'),
    (dict(tables=[{'name': 'public.nokey', 'replica_identity': 'index:nokey_missing'}]),
     'Cannot use these indexes as replica identity'),
    (dict(tables=[{'name': 'public.parted', 'where': 'id > 1'}], publish_via_partition_root=False),
     'a column list or row filter on a partitioned table needs publish_via_partition_root: true '
     '(tables: public.parted)'),
]


def test_error_messages(db):
    """Every documented refusal, all in one playbook; nothing is changed by any of them."""
    db.sql(BASE_SCHEMA)
    before = db.snapshot()
    results = db.run(*[dict(step, name='p_err') for step, expected in ERROR_CASES])
    for result, (step, expected) in zip(results, ERROR_CASES):
        assert expected in failed(result), step
    assert db.snapshot() == before
    assert db.sql('SELECT count(*) FROM sales.orders') == [(0,)]


def test_full_identity_refuses_column_list_and_insert_only_passes(db):
    db.sql(BASE_SCHEMA)
    r = db.run(dict(name='p_f', tables=[{'name': 'public.nokey', 'columns': ['a']}], replica_identity='full'),
               dict(name='p_f', tables=['public.nokey'], publish=['insert', 'truncate']),
               dict(name='p_g', tables=['public.nokey'], check_replica_identity=False))
    assert 'column list on a table with REPLICA IDENTITY FULL (which allows none): public.nokey' in failed(r[0])
    ok(r[1])
    ok(r[2])
    assert db.sql("SELECT relreplident::text FROM pg_class WHERE relname = 'nokey'") == [('d',)]


# ------------------------------------------------------------------------------------------
# Replica identity
# ------------------------------------------------------------------------------------------

def test_replica_identity_fixes(db):
    db.sql(BASE_SCHEMA + '''
        CREATE TABLE public.withidx (u int NOT NULL, v int);
        CREATE UNIQUE INDEX withidx_u ON public.withidx (u);
        CREATE TABLE public.nothing (id int PRIMARY KEY, x int);
        ALTER TABLE public.nothing REPLICA IDENTITY NOTHING;
        CREATE TABLE public.parted_nokey (id int, v int) PARTITION BY RANGE (id);
        CREATE TABLE public.parted_nokey_1 PARTITION OF public.parted_nokey FOR VALUES FROM (0) TO (100);
    ''')
    r = db.run(dict(name='p_ri', tables=['public.nokey', 'public.plain', 'public.nothing', 'public.parted_nokey',
                                         {'name': 'public.withidx', 'replica_identity': 'index:withidx_u',
                                          'where': 'u > 0'}],
                    replica_identity='full'),
               dict(name='p_ri', tables=['public.nokey', 'public.plain', 'public.nothing', 'public.parted_nokey',
                                         {'name': 'public.withidx', 'replica_identity': 'index:withidx_u',
                                          'where': 'u > 0'}],
                    replica_identity='full'))
    ok(r[0])
    assert r[0]['replica_identity_changes'] == [
        {'table': 'public.nokey', 'replica_identity': 'full'},
        {'table': 'public.nothing', 'replica_identity': 'full'},
        {'table': 'public.parted_nokey_1', 'replica_identity': 'full'},
        {'table': 'public.withidx', 'replica_identity': 'index:withidx_u'}]
    assert_idempotent(r[1])
    assert dict(db.sql("SELECT relname, relreplident::text FROM pg_class WHERE relname IN "
                       "('nokey', 'plain', 'nothing', 'parted_nokey_1', 'withidx')")) == {
        'nokey': 'f', 'plain': 'd', 'nothing': 'f', 'parted_nokey_1': 'f', 'withidx': 'i'}
    # UPDATE and DELETE now work on the published tables
    db.sql("INSERT INTO public.nokey VALUES (1, 1); UPDATE public.nokey SET b = 2; DELETE FROM public.nokey;"
           "INSERT INTO public.parted_nokey VALUES (1, 1); UPDATE public.parted_nokey SET v = 2;"
           "INSERT INTO public.withidx VALUES (1, 1); UPDATE public.withidx SET v = 2;")


# ------------------------------------------------------------------------------------------
# Transactions
# ------------------------------------------------------------------------------------------

def test_error_in_the_middle_rolls_everything_back(db):
    db.sql(BASE_SCHEMA)
    ok(db.pub(name='p_tx', tables=['sales.orders', 'public.plain'], comment='old'))
    before = db.snapshot()
    # random() passes the read-only EXPLAIN check but PostgreSQL refuses it in a row filter
    # (mutable function): the ADD TABLE fails after the ALTER TABLE and DROP TABLE already ran.
    msg = failed(db.pub(name='p_tx', tables=['public.plain', 'public.nokey',
                                             {'name': 'billing.invoices', 'where': 'random() > 0.5'}],
                        replica_identity='full', comment='new', publish=['insert', 'update']))
    assert msg.startswith('Nothing was changed: ALTER PUBLICATION "p_tx" ADD TABLE')
    assert 'invalid publication WHERE expression' in msg
    assert db.snapshot() == before


# ------------------------------------------------------------------------------------------
# Hostile names
# ------------------------------------------------------------------------------------------

def test_hostile_names_end_to_end(db):
    db.sql('''
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema"."Weird ""Name""; DROP TABLE x;--" (
            "Id" int PRIMARY KEY, "my col;" text, "ünï" int);
        CREATE TABLE public."ünïcødé" (id int PRIMARY KEY, "Value" text);
        CREATE TABLE public.x (id int);
    ''')
    pubname = 'Pub "quoted"; DROP PUBLICATION x; ünï'
    tables = [{'name': 'Odd Schema.Weird "Name"; DROP TABLE x;--', 'columns': ['ünï', 'Id', 'my col;'],
               'where': '"Id" > 0 AND "Weird ""Name""; DROP TABLE x;--"."Id" < 1000'},
              u'ünïcødé']
    r = db.run(dict(name=pubname, tables=tables), dict(name=pubname, tables=tables))
    ok(r[0])
    assert r[0]['queries'] == [
        'CREATE PUBLICATION "Pub ""quoted""; DROP PUBLICATION x; ünï" FOR TABLE '
        'ONLY "Odd Schema"."Weird ""Name""; DROP TABLE x;--" ("Id", "my col;", "ünï") '
        'WHERE ("Id" > 0 AND "Weird ""Name""; DROP TABLE x;--"."Id" < 1000), ONLY "public"."ünïcødé"']
    assert_idempotent(r[1])
    assert db.publication(pubname) == [
        ('"Odd Schema"."Weird ""Name""; DROP TABLE x;--"', ['Id', 'my col;', 'ünï'],
         '(("Id" > 0) AND ("Id" < 1000))'),
        ('"ünïcødé"', None, None)]
    assert db.sql("SELECT count(*) FROM pg_class WHERE relname = 'x'") == [(1,)]
    assert [t['name'] for t in r[1]['publication']['tables']] == [
        'Odd Schema.Weird "Name"; DROP TABLE x;--', u'public.ünïcødé']


# ------------------------------------------------------------------------------------------
# Data really flows, respecting the row filter and the column list
# ------------------------------------------------------------------------------------------

def test_data_flows_to_a_subscriber(db, subscriber):
    db.sql(BASE_SCHEMA + '''
        INSERT INTO sales.customers VALUES (1, 'Anna', 'DE', 's1'), (2, 'Bob', 'FR', 's2'), (3, 'Cem', 'DE', 's3');
        INSERT INTO sales.orders VALUES (1, 'Anna', 10, 'eu'), (2, 'Bob', 500, 'us');
    ''')
    ok(db.pub(name='p_flow', publish=['insert', 'update', 'delete'], tables=[
        {'name': 'sales.customers', 'columns': ['id', 'name', 'country'], 'where': 'id < 100'},
        {'name': 'sales.orders', 'where': "region = 'eu'", 'replica_identity': 'full'}]))
    target = make_db(subscriber)
    sub = 'sub_%s' % target.name
    try:
        target.sql('''
            CREATE SCHEMA sales;
            CREATE TABLE sales.customers (id int PRIMARY KEY, name text, country text, secret text);
            CREATE TABLE sales.orders (id int PRIMARY KEY, customer text, amount numeric, region text);
        ''')
        conninfo = 'host=127.0.0.1 port=%d user=%s password=%s dbname=%s' % (
            db.cluster.port, db.cluster.user, db.cluster.password, db.name)
        subscriber.execute('CREATE SUBSCRIPTION %s CONNECTION %%s PUBLICATION p_flow' % sub,
                           (conninfo,), dbname=target.name)

        def rows():
            return target.sql('SELECT id, name, country, secret FROM sales.customers ORDER BY id')
        wait_for(lambda: len(rows()) == 3, timeout=60, what='initial copy')
        assert rows() == [(1, 'Anna', 'DE', None), (2, 'Bob', 'FR', None), (3, 'Cem', 'DE', None)]
        # replica identity FULL made orders replicable with a non-key filter
        wait_for(lambda: target.sql('SELECT id FROM sales.orders') == [(1,)], timeout=60, what='orders copy')

        db.sql("INSERT INTO sales.customers VALUES (4, 'Dora', 'IT', 'hidden'), (500, 'Filtered', 'DE', 'x');"
               "UPDATE sales.customers SET name = 'Anne' WHERE id = 1; DELETE FROM sales.customers WHERE id = 2;"
               "INSERT INTO sales.orders VALUES (3, 'Cem', 1, 'eu'), (4, 'Dora', 1, 'us');")
        wait_for(lambda: rows() == [(1, 'Anne', 'DE', None), (3, 'Cem', 'DE', None), (4, 'Dora', 'IT', None)],
                 timeout=60, what='streamed changes (last: %r)' % (rows(),))
        wait_for(lambda: target.sql('SELECT id FROM sales.orders ORDER BY id') == [(1,), (3,)],
                 timeout=60, what='filtered orders')
    finally:
        subscriber.execute('DROP SUBSCRIPTION IF EXISTS %s' % sub, dbname=target.name)
        subscriber.execute('DROP DATABASE %s WITH (FORCE)' % target.name)
    assert db.sql('SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s', (sub,)) == [(0,)]


# ------------------------------------------------------------------------------------------
# converged: what lets site.yml skip its second call of a run
# ------------------------------------------------------------------------------------------

def test_converged_says_whether_the_same_options_would_change_anything(db):
    db.sql(BASE_SCHEMA)
    wanted = dict(name='p_conv', tables=[{'name': 'sales.customers', 'where': 'id > 10'},
                                         'public.plain'],
                  publish_via_partition_root=True, check_replica_identity=True)
    created = ok(db.pub(**wanted))
    assert created['changed'] and created['converged'] is False
    again = ok(db.pub(**wanted))
    assert_idempotent(again)
    assert again['converged'] is True
    # as site.yml's first step: changed_tables=drop, every option given
    assert ok(db.pub(changed_tables='drop', **wanted))['converged'] is True

    # an option the drop step does not apply: not converged, and the drop step changes nothing
    other = dict(wanted, publish_via_partition_root=False)
    dropped = ok(db.pub(changed_tables='drop', **other))
    assert dropped['converged'] is False and dropped['changed'] is False
    # a changed row filter: the drop step drops the table and says the publication differs
    refiltered = dict(wanted, tables=[{'name': 'sales.customers', 'where': 'id > 20'},
                                      'public.plain'])
    dropped = ok(db.pub(changed_tables='drop', **refiltered))
    assert dropped['converged'] is False and dropped['changed'] is True
    assert dropped['filter_changed'] == ['sales.customers']
    assert db.publication('p_conv') == [('plain', None, None)]
    # the second step puts it back, then both say converged
    assert ok(db.pub(**refiltered))['changed'] is True
    assert ok(db.pub(changed_tables='drop', **refiltered))['converged'] is True
    assert ok(db.pub(**refiltered))['converged'] is True
    # a missing publication, and state=absent
    assert ok(db.pub(name='p_none', tables=['public.plain'], _check=True))['converged'] is False
    assert ok(db.pub(name='p_none', state='absent'))['converged'] is True
    assert ok(db.pub(name='p_conv', state='absent', _check=True))['converged'] is False
