# -*- coding: utf-8 -*-
"""pg_target_tables definition=peer: the rest of a table's definition for a bidirectional peer,
planned without a database."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.peer_defs import peer_from_catalog
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import (
    PlanError, TargetState, parse_table_specs, plan_changes, resolve_desired, table_from_catalog)


def table(name, columns, pk='id', indexes=()):
    return table_from_catalog({
        'schema': 'ledger', 'name': name, 'kind': 'r', 'replica_identity': 'd',
        'columns': [{'name': c, 'type': 'integer', 'not_null': c == pk} for c in columns],
        'pk_name': name + '_pkey', 'pk_columns': [pk],
        'indexes': [{'name': i, 'unique': True, 'method': 'btree (code)', 'columns': ['code']} for i in indexes]})


def seq(name, owned=False, **kw):
    item = {'schema': 'ledger', 'name': name, 'type': 'bigint', 'start': 1, 'increment': 1, 'min': 1,
            'max': 9223372036854775807, 'cache': 1, 'cycle': False, 'owned': owned}
    item.update(kw)
    return item


ACCOUNTS = table('accounts', ['id', 'code', 'doc'], indexes=['accounts_code_key'])
ENTRIES = table('entries', ['id', 'account_id', 'doc'])
PEERS = [
    {'schema': 'ledger', 'name': 'accounts',
     'columns': [{'name': 'id', 'default': "nextval('ledger.accounts_id_seq'::regclass)",
                  'sequences': [seq('accounts_id_seq', owned=True)]},
                 {'name': 'doc', 'default': "nextval('ledger.doc_no'::regclass)",
                  'sequences': [seq('doc_no', start=1000, increment=5, cycle=True)]}],
     'constraints': [{'name': 'accounts_code_key', 'type': 'u', 'definition': 'UNIQUE (code)',
                      'index': 'accounts_code_key'},
                     {'name': 'doc_positive', 'type': 'c', 'definition': 'CHECK ((doc > 0))'}]},
    {'schema': 'ledger', 'name': 'entries',
     'columns': [{'name': 'id', 'identity': 'a', 'sequences': [seq('entries_id_seq', start=100, increment=10)]},
                 {'name': 'doc', 'default': "nextval('ledger.doc_no'::regclass)",
                  'sequences': [seq('doc_no', start=1000, increment=5, cycle=True)]}],
     'constraints': [{'name': 'entries_account_fk', 'type': 'f', 'references': ['ledger', 'accounts'],
                      'definition': 'FOREIGN KEY (account_id) REFERENCES ledger.accounts(id)'}]},
]


def peer_plan(names, source, peers, target=None, **kw):
    desired = resolve_desired(parse_table_specs(names), source)
    by_key = dict((p.key, p) for p in (peer_from_catalog(r) for r in peers))
    return plan_changes(desired, target or TargetState(schemas=['ledger']), peers=by_key, **kw)


def test_sequences_first_then_tables_then_ownership_constraints_and_foreign_keys_last():
    got = render_all(peer_plan(['ledger.accounts', 'ledger.entries'], [ACCOUNTS, ENTRIES], PEERS).statements)
    assert got == [
        'CREATE SEQUENCE IF NOT EXISTS "ledger"."accounts_id_seq" AS bigint INCREMENT BY 1 MINVALUE 1 '
        'MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE',
        # shared by two tables' defaults: created once, with its own parameters
        'CREATE SEQUENCE IF NOT EXISTS "ledger"."doc_no" AS bigint INCREMENT BY 5 MINVALUE 1 '
        'MAXVALUE 9223372036854775807 START WITH 1000 CACHE 1 CYCLE',
        'CREATE TABLE "ledger"."accounts" ("id" integer DEFAULT nextval(\'ledger.accounts_id_seq\'::regclass) '
        'NOT NULL, "code" integer, "doc" integer DEFAULT nextval(\'ledger.doc_no\'::regclass), '
        'CONSTRAINT "accounts_pkey" PRIMARY KEY ("id"))',
        'CREATE TABLE "ledger"."entries" ("id" integer GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME '
        '"ledger"."entries_id_seq" INCREMENT BY 10 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 100 '
        'CACHE 1 NO CYCLE) NOT NULL, "account_id" integer, "doc" integer DEFAULT '
        'nextval(\'ledger.doc_no\'::regclass), CONSTRAINT "entries_pkey" PRIMARY KEY ("id"))',
        # only the serial's sequence was owned on the source
        'ALTER SEQUENCE "ledger"."accounts_id_seq" OWNED BY "ledger"."accounts"."id"',
        'ALTER TABLE "ledger"."accounts" ADD CONSTRAINT "accounts_code_key" UNIQUE (code)',
        'ALTER TABLE "ledger"."accounts" ADD CONSTRAINT "doc_positive" CHECK ((doc > 0))',
        'ALTER TABLE "ledger"."entries" ADD CONSTRAINT "entries_account_fk" FOREIGN KEY (account_id) '
        'REFERENCES ledger.accounts(id)',
    ]


def test_a_unique_constraints_index_is_not_planned_again_as_a_plain_index():
    result = peer_plan(['ledger.accounts'], [ACCOUNTS], PEERS[:1], indexes=True, defer_indexes=False)
    text = ' '.join(render_all(result.statements + result.index_statements))
    assert 'CREATE UNIQUE INDEX "accounts_code_key"' not in text
    assert 'ADD CONSTRAINT "accounts_code_key" UNIQUE (code)' in text
    # a replica gets it as the plain unique index it always got
    replica = plan_changes(resolve_desired(parse_table_specs(['ledger.accounts']),
                                           [table('accounts', ['id', 'code', 'doc'], indexes=['accounts_code_key'])]),
                           TargetState(schemas=['ledger']), indexes=True, defer_indexes=False)
    assert 'CREATE UNIQUE INDEX "accounts_code_key"' in ' '.join(render_all(replica.statements))


def test_a_foreign_key_to_a_table_outside_the_call_is_refused_before_any_change():
    with pytest.raises(PlanError) as e:
        peer_plan(['ledger.entries'], [ENTRIES], PEERS)
    assert 'The foreign key entries_account_fk of ledger.entries references ledger.accounts, which is ' \
           'not in the sync set' in ' '.join(e.value.messages)


def test_a_default_sequence_in_a_schema_without_tables_of_the_set_is_refused():
    peers = [dict(PEERS[0], columns=[{'name': 'doc', 'default': "nextval('ids.doc_no'::regclass)",
                                      'sequences': [seq('doc_no', schema='ids')]}], constraints=[])]
    with pytest.raises(PlanError) as e:
        peer_plan(['ledger.accounts'], [ACCOUNTS], peers)
    assert 'uses the sequence ids.doc_no, in a schema without tables of the sync set' in ' '.join(e.value.messages)


def test_by_default_identity_is_kept():
    peers = [PEERS[0], dict(PEERS[1], columns=[dict(PEERS[1]['columns'][0], identity='d')])]
    got = render_all(peer_plan(['ledger.accounts', 'ledger.entries'], [ACCOUNTS, ENTRIES], peers).statements)
    assert 'GENERATED BY DEFAULT AS IDENTITY' in ' '.join(got)


def test_a_replicas_existing_tables_get_what_they_lack_in_one_plan():
    """A one-way set made bidirectional: the tables exist as a replica's (no defaults, no
    constraints, the unique constraint's index as a plain unique index)."""
    target = TargetState(schemas=['ledger'], tables=[ACCOUNTS, ENTRIES])
    got = render_all(peer_plan(['ledger.accounts', 'ledger.entries'], [ACCOUNTS, ENTRIES], PEERS,
                               target=target).statements)
    assert got == [
        'CREATE SEQUENCE IF NOT EXISTS "ledger"."accounts_id_seq" AS bigint INCREMENT BY 1 MINVALUE 1 '
        'MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE',
        'CREATE SEQUENCE IF NOT EXISTS "ledger"."doc_no" AS bigint INCREMENT BY 5 MINVALUE 1 '
        'MAXVALUE 9223372036854775807 START WITH 1000 CACHE 1 CYCLE',
        'ALTER TABLE "ledger"."accounts" ALTER COLUMN "id" SET DEFAULT nextval(\'ledger.accounts_id_seq\'::regclass)',
        'ALTER TABLE "ledger"."accounts" ALTER COLUMN "doc" SET DEFAULT nextval(\'ledger.doc_no\'::regclass)',
        'ALTER TABLE "ledger"."entries" ALTER COLUMN "id" ADD GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME '
        '"ledger"."entries_id_seq" INCREMENT BY 10 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 100 '
        'CACHE 1 NO CYCLE)',
        'ALTER TABLE "ledger"."entries" ALTER COLUMN "doc" SET DEFAULT nextval(\'ledger.doc_no\'::regclass)',
        'ALTER SEQUENCE "ledger"."accounts_id_seq" OWNED BY "ledger"."accounts"."id"',
        # the replica's unique index of that name becomes the constraint's
        'ALTER TABLE "ledger"."accounts" ADD CONSTRAINT "accounts_code_key" UNIQUE USING INDEX "accounts_code_key"',
        'ALTER TABLE "ledger"."accounts" ADD CONSTRAINT "doc_positive" CHECK ((doc > 0))',
        'ALTER TABLE "ledger"."entries" ADD CONSTRAINT "entries_account_fk" FOREIGN KEY (account_id) '
        'REFERENCES ledger.accounts(id)',
    ]


def test_what_a_peers_table_has_is_kept_and_a_complete_peer_plans_nothing():
    have = dict((p.key, p) for p in (peer_from_catalog(r) for r in PEERS))
    target = TargetState(schemas=['ledger'], tables=[ACCOUNTS, ENTRIES], peers=have)
    assert peer_plan(['ledger.accounts', 'ledger.entries'], [ACCOUNTS, ENTRIES], PEERS, target=target).statements == []
    # a default of its own, and a foreign key to a table outside the call it has already: kept
    own = [dict(PEERS[1], columns=[{'name': 'doc', 'default': '42'}])]
    have = dict((p.key, p) for p in (peer_from_catalog(r) for r in own))
    target = TargetState(schemas=['ledger'], tables=[ENTRIES], peers=have)
    got = render_all(peer_plan(['ledger.entries'], [ENTRIES], PEERS, target=target).statements)
    assert [s for s in got if 'doc' in s or 'entries_account_fk' in s] == []
    assert got == ['ALTER TABLE "ledger"."entries" ALTER COLUMN "id" ADD GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME '
                   '"ledger"."entries_id_seq" INCREMENT BY 10 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 100 '
                   'CACHE 1 NO CYCLE)']


def test_an_exclusion_constraint_replaces_the_replicas_plain_index_of_its_name():
    entries = table('entries', ['id', 'account_id', 'doc'], indexes=['entries_no_overlap'])
    peers = [dict(PEERS[1], columns=[], constraints=[
        {'name': 'entries_no_overlap', 'type': 'x', 'index': 'entries_no_overlap',
         'definition': 'EXCLUDE USING gist (during WITH &&)'}])]
    target = TargetState(schemas=['ledger'], tables=[entries])
    got = render_all(peer_plan(['ledger.entries'], [entries], peers, target=target).statements)
    assert got == ['DROP INDEX "ledger"."entries_no_overlap"',
                   'ALTER TABLE "ledger"."entries" ADD CONSTRAINT "entries_no_overlap" EXCLUDE USING gist (during WITH &&)']


@pytest.mark.parametrize('bad', [{'start': '1; DROP TABLE x'}, {'type': 'bigint; DROP TABLE x'}, {'cache': True}])
def test_sequence_parameters_from_the_catalog_are_validated(bad):
    row = dict(PEERS[0], columns=[dict(PEERS[0]['columns'][0], sequences=[seq('s', **bad)])])
    with pytest.raises(ValueError):
        peer_from_catalog(row)
