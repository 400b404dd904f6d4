"""pg_target_tables indexes / defer_indexes against real clusters (publisher = source).

The secondary indexes of a table created for a new subscription are left out until its initial
copy has finished, then built by the next call; a table still being copied keeps them deferred;
an interrupted run (the index builds never ran, or a concurrent build left an invalid index) is
completed by the next run.
"""
import pytest
from psycopg2 import sql

from helpers import HOSTILE_SCHEMA, HOSTILE_TABLE, DatabasePair, quoted
from pgcluster import SUPERPASS, wait_for
from runner import run_module

MODULE = 'tablesync.postgresql.pg_target_tables'
TABLE = quoted(HOSTILE_SCHEMA, HOSTILE_TABLE)
IDENT = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
SECONDARY = ['Customer "idx"', 'note_lower_idx', 'paid_key']

SOURCE_DDL = '''
CREATE SCHEMA {schema};
CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    "Customer" integer NOT NULL,
    note text,
    paid boolean NOT NULL DEFAULT false);
CREATE INDEX "Customer ""idx""" ON {table} ("Customer" DESC) INCLUDE (paid) WITH (fillfactor = 70);
CREATE INDEX note_lower_idx ON {table} (lower(note) text_pattern_ops);
CREATE UNIQUE INDEX paid_key ON {table} (id, "Customer") WHERE paid;
INSERT INTO {table} SELECT g, g % 100, 'Note ' || g, g % 3 = 0 FROM generate_series(1, 20000) g;
'''

INDEXDEFS = '''
SELECT c.relname::text, pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid),
       ' ON .* USING ', ' ON t USING '), i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = %s::regclass ORDER BY 1
'''


class Pair(DatabasePair):
    def __init__(self, publisher, subscriber):
        super(Pair, self).__init__(publisher, subscriber, 'ti')
        self.subscriptions = []

    def run(self, check=False, **kw):
        args = self.module_args(tables=[TABLE], indexes=True)
        args.update(kw)
        return run_module(MODULE, args, check=check)

    def indexdefs(self, target=True):
        query = self.target_sql if target else self.source_sql
        return query(INDEXDEFS, (TABLE,))

    def subscribe(self, name, enabled=True):
        conninfo = "host=%s port=%d dbname=%s user=%s password='%s'" % (
            self.src.host, self.src.port, self.db, self.src.user, SUPERPASS)
        self.target_sql(sql.SQL('CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} '
                                'WITH (enabled = {})').format(
            sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(self.db),
            sql.SQL('true' if enabled else 'false')))
        self.subscriptions.append(name)

    def states(self):
        return [r[0] for r in self.target_sql('SELECT srsubstate FROM pg_subscription_rel')]

    def drop(self):
        for name in self.subscriptions:
            self.target_sql(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(sql.Identifier(name)))
        super(Pair, self).drop()


@pytest.fixture
def pair(publisher, subscriber):
    p = Pair(publisher, subscriber)
    p.source_sql(sql.SQL(SOURCE_DDL).format(schema=sql.Identifier(HOSTILE_SCHEMA), table=IDENT))
    p.source_sql(sql.SQL('CREATE PUBLICATION {} FOR TABLE {}').format(sql.Identifier(p.db), IDENT))
    yield p
    p.drop()


def assert_ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def test_deferred_until_the_initial_copy_finished(pair):
    first = assert_ok(pair.run())
    assert first['created'] == ['%s.%s' % (HOSTILE_SCHEMA, HOSTILE_TABLE)]
    assert first['indexes']['deferred'] == {first['created'][0]: SECONDARY}
    assert first['indexes']['built'] == {}
    assert not any('INDEX' in q for q in first['queries'])
    # only the primary key while the rows arrive
    assert [r[0] for r in pair.indexdefs()] == ['%s_pkey' % HOSTILE_TABLE[:58]]

    pair.subscribe('ti_sub')
    wait_for(lambda: pair.states() == ['r'], timeout=90, what='initial copy')
    # check mode: the builds are shown, nothing is built
    check = assert_ok(pair.run(check=True))
    assert check['changed'] is True
    assert check['indexes']['built'] == {first['created'][0]: SECONDARY}
    assert len([q for q in check['queries'] if q.startswith('CREATE ')]) == 3
    assert len(pair.indexdefs()) == 1

    second = assert_ok(pair.run())
    assert second['changed'] is True and second['created'] == []
    assert second['indexes']['built'] == {first['created'][0]: SECONDARY}
    assert pair.indexdefs() == pair.indexdefs(target=False)  # same definitions, all valid
    assert all(valid for _n, _d, valid in pair.indexdefs())
    # the unique partial index enforces what the source enforces, and replication goes on
    pair.source_sql(sql.SQL('UPDATE {} SET note = %s WHERE id = 3').format(IDENT), ('changed',))
    wait_for(lambda: pair.target_sql(sql.SQL('SELECT note FROM {} WHERE id = 3').format(IDENT))
             == [('changed',)], timeout=60, what='update replicated')

    third = assert_ok(pair.run())
    assert third['changed'] is False and third['queries'] == []
    assert third['indexes'] == {'built': {}, 'deferred': {}, 'skipped': []}


def test_table_still_being_copied_keeps_its_indexes_deferred(pair):
    assert_ok(pair.run())
    pair.subscribe('ti_busy', enabled=False)
    assert pair.states() == ['i']
    result = assert_ok(pair.run())
    assert result['changed'] is False
    assert list(result['indexes']['deferred'].values()) == [SECONDARY]
    # hold the table sync worker's COPY (it waits for this lock): the state stays 'd'
    conn = pair.dst.connect(pair.db, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL('LOCK TABLE {} IN ACCESS EXCLUSIVE MODE').format(IDENT))
        pair.target_sql('ALTER SUBSCRIPTION ti_busy ENABLE')
        wait_for(lambda: pair.states() == ['d'], timeout=60, what='table sync started')
        # the module's catalog reads do not wait for the table's lock
        result = assert_ok(pair.run())
        assert result['changed'] is False
        assert list(result['indexes']['deferred'].values()) == [SECONDARY]
    finally:
        conn.rollback()
        conn.close()
    wait_for(lambda: pair.states() == ['r'], timeout=90, what='initial copy')
    result = assert_ok(pair.run())
    assert list(result['indexes']['built'].values()) == [SECONDARY]
    assert pair.target_sql(sql.SQL('SELECT count(*) FROM {}').format(IDENT)) == [(20000,)]


def test_interrupted_build_completed_by_the_next_run(pair):
    assert_ok(pair.run())
    pair.subscribe('ti_crash')
    wait_for(lambda: pair.states() == ['r'], timeout=90, what='initial copy')
    # a build that stopped half-way: one index built, one invalid one left by a concurrent build
    pair.target_sql(sql.SQL('CREATE INDEX note_lower_idx ON {} (lower(note) text_pattern_ops)')
                    .format(IDENT))
    with pytest.raises(Exception, match='could not create unique index'):
        pair.target_sql(sql.SQL('CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ("Customer")').format(
            sql.Identifier('Customer "idx"'), IDENT))
    assert ('Customer "idx"', False) in [(n, v) for n, _d, v in pair.indexdefs()]
    result = assert_ok(pair.run())
    assert list(result['indexes']['built'].values()) == [['Customer "idx"', 'paid_key']]
    assert any(q.startswith('DROP INDEX') for q in result['queries'])
    assert pair.indexdefs() == pair.indexdefs(target=False)


def test_not_deferred_created_with_the_table(pair):
    result = assert_ok(pair.run(defer_indexes=False))
    assert list(result['indexes']['built'].values()) == [SECONDARY]
    assert pair.indexdefs() == pair.indexdefs(target=False)
    assert assert_ok(pair.run(defer_indexes=False))['changed'] is False


def test_column_subset_skips_indexes_needing_left_out_columns(pair):
    result = assert_ok(pair.run(tables=[{'name': TABLE, 'columns': ['id', 'Customer', 'paid']}],
                                defer_indexes=False))
    assert list(result['indexes']['built'].values()) == [['Customer "idx"', 'paid_key']]
    assert [(s['index'], 'note' in s['reason']) for s in result['indexes']['skipped']] == [
        ('note_lower_idx', True)]


def test_a_failing_build_is_reported_and_the_table_stays(pair):
    # the target has a relation named like one of the indexes, in the table's schema
    pair.target_sql(sql.SQL('CREATE SCHEMA {}; CREATE TABLE {} (x int)').format(
        sql.Identifier(HOSTILE_SCHEMA), sql.Identifier(HOSTILE_SCHEMA, 'paid_key')))
    assert_ok(pair.run())
    result = pair.run()
    assert result.get('failed')
    assert 'Building an index failed' in result['msg'] and 'paid_key' in result['msg']
    assert result['changed'] is True
    assert SUPERPASS not in result['_run'].output
    names = [r[0] for r in pair.indexdefs()]
    assert 'Customer "idx"' in names and 'paid_key' not in names
