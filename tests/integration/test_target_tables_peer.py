"""pg_target_tables definition=peer: a bidirectional peer's tables get the source's whole
definition (defaults, the sequences they use, identity, check, unique, exclusion and foreign key
constraints), compared catalog by catalog with the source, and they take writes of their own
exactly as the source does."""
import psycopg2
import pytest

from helpers import DatabasePair
from runner import run_module

MODULE = 'tablesync.postgresql.pg_target_tables'

SOURCE_DDL = '''
CREATE SCHEMA ledger;
CREATE SEQUENCE ledger.doc_no AS integer START WITH 1000 INCREMENT BY 5 MAXVALUE 900000 CACHE 3 CYCLE;
CREATE TABLE ledger.accounts (
    id serial PRIMARY KEY,
    code text NOT NULL CONSTRAINT accounts_code_key UNIQUE,
    balance numeric(12,2) NOT NULL DEFAULT 0 CONSTRAINT balance_floor CHECK (balance >= -1000),
    opened date NOT NULL DEFAULT current_date,
    kind text DEFAULT 'std' || '-' || 'x',
    doc integer DEFAULT nextval('ledger.doc_no'));
CREATE TABLE ledger.entries (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 10) PRIMARY KEY,
    account_id integer NOT NULL CONSTRAINT entries_account_fk REFERENCES ledger.accounts ON DELETE CASCADE,
    amount numeric(12,2) NOT NULL CHECK (amount <> 0),
    at timestamptz NOT NULL DEFAULT now(),
    during tstzrange,
    doc integer DEFAULT nextval('ledger.doc_no'),
    CONSTRAINT entries_no_overlap EXCLUDE USING gist (during WITH &&));
CREATE INDEX entries_at ON ledger.entries (at);
INSERT INTO ledger.accounts (code) VALUES ('a'), ('b');
'''
TABLES = ['ledger.accounts', 'ledger.entries']

SHAPE_SQL = '''
SELECT a.attrelid::regclass::text, a.attname::text, a.attidentity::text, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid IN ('ledger.accounts'::regclass, 'ledger.entries'::regclass)
   AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT conrelid::regclass::text, conname::text, contype::text, NULL, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'ledger'::regnamespace
UNION ALL
SELECT c.relname::text, format_type(s.seqtypid, NULL), s.seqcycle::text, NULL,
       concat_ws(' ', s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                 (SELECT d.refobjid::regclass || '.' || d.refobjsubid FROM pg_depend d
                   WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
ORDER BY 1, 2
'''


@pytest.fixture
def pair(publisher, subscriber):
    p = DatabasePair(publisher, subscriber, 'peer')
    p.source_sql(SOURCE_DDL)
    yield p
    p.drop()


def test_a_peer_gets_the_whole_definition_and_takes_writes_like_the_source(pair):
    checked = run_module(MODULE, pair.module_args(tables=TABLES, definition='peer'), check=True)
    assert checked['changed'] and not checked.get('failed'), checked
    assert pair.target_sql("SELECT count(*) FROM pg_class WHERE relnamespace = "
                           "(SELECT oid FROM pg_namespace WHERE nspname = 'ledger')") == [(0,)]

    result = run_module(MODULE, pair.module_args(tables=TABLES, definition='peer', indexes=True,
                                                 defer_indexes=False))
    assert result['changed'] and not result.get('failed'), result
    assert pair.target_sql(SHAPE_SQL) == pair.source_sql(SHAPE_SQL)
    # the secondary index is built; the constraints' indexes are not built twice
    assert pair.target_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'ledger' ORDER BY 1") == \
        pair.source_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'ledger' ORDER BY 1")
    again = run_module(MODULE, pair.module_args(tables=TABLES, definition='peer', indexes=True))
    assert not again['changed'] and again['queries'] == [], again

    # the same writes behave the same on both: defaults fill the columns left out, the
    # constraints refuse what the source refuses
    write = ("INSERT INTO ledger.accounts (id, code) VALUES (50, 'peer');"
             "INSERT INTO ledger.entries (account_id, amount) VALUES (50, 1.5)"
             " RETURNING id, doc, at IS NOT NULL")
    pair.target_sql("DELETE FROM ledger.accounts")
    pair.source_sql("DELETE FROM ledger.accounts")
    assert pair.target_sql(write) == [(100, 1005, True)]   # the accounts row took 1000
    assert pair.target_sql("SELECT balance, opened = current_date, kind FROM ledger.accounts") == \
        pair.source_sql("INSERT INTO ledger.accounts (id, code) VALUES (50, 'peer') "
                        "RETURNING balance, opened = current_date, kind")
    for bad in ("INSERT INTO ledger.accounts (code, balance) VALUES ('c', -5000)",
                "INSERT INTO ledger.accounts (code) VALUES ('peer')",
                "INSERT INTO ledger.entries (account_id, amount) VALUES (999, 1)",
                "INSERT INTO ledger.entries (account_id, amount) VALUES (50, 0)",
                "INSERT INTO ledger.entries (id, account_id, amount) VALUES (7, 50, 1)",
                "INSERT INTO ledger.entries (account_id, amount, during) VALUES "
                "(50, 1, '[2026-01-01,2026-02-01)'), (50, 2, '[2026-01-15,2026-03-01)')"):
        for side in (pair.source_sql, pair.target_sql):
            with pytest.raises(psycopg2.Error):
                side(bad)


def test_a_foreign_key_to_a_table_outside_the_call_fails_before_any_change(pair):
    result = run_module(MODULE, pair.module_args(tables=['ledger.entries'], definition='peer'))
    assert result.get('failed'), result
    assert 'entries_account_fk of ledger.entries references ledger.accounts, which is not in the ' \
           'sync set' in result['msg'], result['msg']
    assert pair.target_sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'ledger'") == [(0,)]


def test_a_replica_keeps_the_minimal_definition(pair):
    result = run_module(MODULE, pair.module_args(tables=TABLES))
    assert result['changed'], result
    assert pair.target_sql("SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid "
                           "WHERE c.relnamespace = 'ledger'::regnamespace") == [(0,)]
    assert pair.target_sql("SELECT count(*) FROM pg_sequence") == [(0,)]


def test_a_replica_made_a_peer_gets_what_it_lacks_in_one_transaction(pair):
    """A one-way set made bidirectional: its target's tables (a replica's, with the unique and
    exclusion constraints' indexes as plain indexes, and rows) are completed, not recreated."""
    assert run_module(MODULE, pair.module_args(tables=TABLES, indexes=True, defer_indexes=False))['changed']
    pair.target_sql("INSERT INTO ledger.accounts (id, code, balance, opened) VALUES (1, 'a', 0, current_date)")
    # a foreign key to a table outside the call fails before anything of the completion is done
    refused = run_module(MODULE, pair.module_args(tables=['ledger.entries'], definition='peer'))
    assert refused.get('failed') and 'which is not in the sync set' in refused['msg'], refused
    assert pair.target_sql("SELECT count(*) FROM pg_attrdef") == [(0,)]

    result = run_module(MODULE, pair.module_args(tables=TABLES, definition='peer', indexes=True), diff=True)
    assert result['changed'] and not result.get('failed'), result
    assert any('UNIQUE USING INDEX' in q for q in result['queries']), result['queries']
    assert pair.target_sql(SHAPE_SQL) == pair.source_sql(SHAPE_SQL)
    assert pair.target_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'ledger' ORDER BY 1") == \
        pair.source_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'ledger' ORDER BY 1")
    assert pair.target_sql("SELECT id, code FROM ledger.accounts") == [(1, 'a')]
    again = run_module(MODULE, pair.module_args(tables=TABLES, definition='peer', indexes=True))
    assert not again['changed'] and again['queries'] == [], again
