"""The snapshot copy planner (pg_subscription initial_copy=snapshot) without a database:
publication merging, target checks, index deferral, statements and quoting."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.logical import snapshot_copy as sc
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copy import (
    SnapshotCopyError)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, render)


def pub_row(table, pubname='p1', columns=('id', 'v'), rowfilter=None, relkind='r',
            schema='public'):
    return dict(pubname=pubname, schemaname=schema, tablename=table, relkind=relkind,
                attnames=list(columns) if columns is not None else None, rowfilter=rowfilter)


def target(schema='public', name='t', columns=('id', 'v'), indexes=(), relkind='r',
           partition=False, exists=True):
    return dict(schema=schema, name=name, exists=exists, relkind=relkind if exists else None,
                relispartition=partition, columns=list(columns) if exists else [],
                indexes=list(indexes))


PKEY = dict(name='t_pkey', schema='public', definition='CREATE UNIQUE INDEX t_pkey ON public.t '
            'USING btree (id)', constraint='t_pkey', contype='p',
            constraint_definition='PRIMARY KEY (id)', keep=None)
PLAIN = dict(name='t_v_idx', schema='public', definition='CREATE INDEX t_v_idx ON public.t '
             'USING btree (v)', constraint=None, contype=None, constraint_definition=None,
             keep=None)


# ---- merging the publications ----------------------------------------------------------------

def test_merge_one_entry_per_table_in_order():
    merged = sc.merge_published([pub_row('a'), pub_row('b', pubname='p1'),
                                 pub_row('b', pubname='p2')])
    assert [(m['table'], m['publications']) for m in merged] == [
        ('a', ['p1']), ('b', ['p1', 'p2'])]


def test_merge_row_filters_are_ored_unless_one_publication_has_none():
    merged = sc.merge_published([pub_row('t', 'p1', rowfilter='(id > 1)'),
                                 pub_row('t', 'p2', rowfilter='(v = 2)'),
                                 pub_row('t', 'p3', rowfilter='(id > 1)')])
    assert merged[0]['filters'] == ['(id > 1)', '(v = 2)']
    merged = sc.merge_published([pub_row('t', 'p1', rowfilter='(id > 1)'),
                                 pub_row('t', 'p2', rowfilter=None)])
    assert merged[0]['filters'] == []


def test_merge_refuses_different_column_lists():
    with pytest.raises(SnapshotCopyError, match='published with different column lists'):
        sc.merge_published([pub_row('t', 'p1', columns=('id',)),
                            pub_row('t', 'p2', columns=('id', 'v'))])


def test_merge_partitioned_root():
    merged = sc.merge_published([pub_row('parent', relkind='p')])
    assert merged[0]['partitioned'] is True


# ---- statements --------------------------------------------------------------------------------

def test_copy_statements_quote_every_identifier():
    entry = sc.merge_published([pub_row('Ta"ble; DROP', schema='Sch ä',
                                        columns=('Id', 'we"ird'), rowfilter='("Id" > 5)')])[0]
    assert render(sc.copy_out_statement(entry, entry['columns'])) == (
        'COPY (SELECT "Id", "we""ird" FROM ONLY "Sch ä"."Ta""ble; DROP" WHERE (("Id" > 5))) '
        'TO STDOUT')
    assert render(sc.copy_in_statement(entry, entry['columns'])) == (
        'COPY "Sch ä"."Ta""ble; DROP" ("Id", "we""ird") FROM STDIN')


def test_copy_out_of_a_partitioned_root_includes_its_partitions_and_ors_filters():
    entry = sc.merge_published([pub_row('parent', 'p1', relkind='p', rowfilter='(id > 1)'),
                                pub_row('parent', 'p2', relkind='p', rowfilter='(id < 0)')])[0]
    assert render(sc.copy_out_statement(entry, ['id'])) == (
        'COPY (SELECT "id" FROM "public"."parent" WHERE ((id > 1)) OR ((id < 0))) TO STDOUT')


def test_slot_command():
    assert render(Statement(sc.slot_command('tablesync_orders'))) == (
        'CREATE_REPLICATION_SLOT "tablesync_orders" LOGICAL pgoutput EXPORT_SNAPSHOT')


def test_nonempty_query_one_statement_for_all_tables():
    text = render(Statement(sc.nonempty_query([('s', 'a', False), ('s', 'b"', True)])))
    assert text == ('SELECT 0 AS position WHERE EXISTS (SELECT FROM ONLY "s"."a") UNION ALL '
                    'SELECT 1 AS position WHERE EXISTS (SELECT FROM "s"."b""")')


# ---- indexes ---------------------------------------------------------------------------------

def test_index_plan_drops_and_rebuilds_constraints_and_plain_indexes():
    drops, rebuilds, kept = sc.index_plan('public', 't', [PKEY, PLAIN])
    assert [render(s) for s in drops] == ['ALTER TABLE "public"."t" DROP CONSTRAINT "t_pkey"',
                                          'DROP INDEX "public"."t_v_idx"']
    assert [render(s) for s in rebuilds] == [
        'ALTER TABLE "public"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY (id)',
        'CREATE INDEX t_v_idx ON public.t USING btree (v)']
    assert kept == []


def test_index_plan_keeps_what_the_definition_does_not_carry():
    commented = dict(PLAIN, keep='it has a comment')
    drops, rebuilds, kept = sc.index_plan('public', 't', [PKEY, commented])
    assert len(drops) == 1 and len(rebuilds) == 1
    assert kept == [{'index': 't_v_idx', 'reason': 'it has a comment'}]


def test_index_plan_keeps_everything_of_partitions():
    drops, rebuilds, kept = sc.index_plan('public', 't', [PKEY, PLAIN], rebuildable=False)
    assert drops == [] and rebuilds == []
    assert [k['reason'] for k in kept] == ['the table is a partition or partitioned'] * 2


# ---- the whole plan ----------------------------------------------------------------------------

def test_plan_tables_uses_the_published_columns_and_rebuilds_indexes():
    published = sc.merge_published([pub_row('t', columns=('id',))])
    [plan] = sc.plan_tables(published, [target(indexes=[PKEY, PLAIN])], set())
    assert plan['name'] == 'public.t' and plan['key'] == ('public', 't', False)
    assert render(plan['copy_in']) == 'COPY "public"."t" ("id") FROM STDIN'
    assert len(plan['drops']) == 2 and len(plan['rebuilds']) == 2


def test_plan_tables_partition_target_keeps_indexes():
    published = sc.merge_published([pub_row('t')])
    [plan] = sc.plan_tables(published, [target(indexes=[PKEY], partition=True)], set())
    assert plan['drops'] == [] and plan['kept'][0]['index'] == 't_pkey'


def test_plan_tables_lists_every_problem_at_once():
    published = sc.merge_published([pub_row('gone'), pub_row('narrow'), pub_row('full')])
    targets = [target(name='gone', exists=False), target(name='narrow', columns=('id',)),
               target(name='full')]
    with pytest.raises(SnapshotCopyError) as error:
        sc.plan_tables(published, targets, {'public.full'})
    msg = str(error.value)
    assert 'public.gone does not exist on the subscriber' in msg
    assert 'public.narrow on the subscriber lacks the published column(s) v' in msg
    assert 'public.full on the subscriber is not empty' in msg
    assert 'Nothing was changed' in msg


def test_plan_tables_without_tables():
    assert sc.plan_tables([], [], set()) == []


# ---- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize('options, expected', [
    ({}, True),
    ({'copy_data': False}, False),
    ({'connect': False}, False),
    ({'create_slot': False}, False),
    ({'slot_name': 'NONE'}, False),
    ({'slot_name': 'x'}, True),
])
def test_uses_snapshot(options, expected):
    assert sc.uses_snapshot('snapshot', options) is expected
    assert sc.uses_snapshot('tablesync', options) is False


def test_check_copy_options_refuses_two_phase_and_takes_failover():
    with pytest.raises(SnapshotCopyError, match='does not support two_phase'):
        sc.check_copy_options({'two_phase': True}, 2)
    sc.check_copy_options({'two_phase': False}, 2)
    sc.check_copy_options({'failover': True}, 2)


def test_failover_slot_command_and_its_publisher_version():
    assert render(Statement(sc.slot_command('tablesync_orders', failover=True))) == (
        'CREATE_REPLICATION_SLOT "tablesync_orders" LOGICAL pgoutput (SNAPSHOT \'export\', FAILOVER)')
    with pytest.raises(SnapshotCopyError, match='PostgreSQL 17 or later on the publisher .* runs PostgreSQL 16'):
        sc.check_failover_publisher(160004)
    sc.check_failover_publisher(170000)


def test_check_copy_options_jobs():
    with pytest.raises(SnapshotCopyError, match='copy_jobs must be at least 1'):
        sc.check_copy_options({}, 0)


def test_snapshot_desired_creates_on_the_copied_slot_without_a_copy():
    desired = {'name': 'sub_a', 'options': {'enabled': True}}
    created = sc.snapshot_desired(desired)
    assert created['options'] == {'enabled': False, 'slot_name': 'sub_a', 'create_slot': False,
                                  'copy_data': False}
    assert desired['options'] == {'enabled': True}  # not changed in place
    assert sc.snapshot_desired({'name': 'Sub A', 'options': {'slot_name': 'ok_1'}})[
        'options']['slot_name'] == 'ok_1'
    with pytest.raises(SnapshotCopyError, match='not a valid slot name'):
        sc.snapshot_desired({'name': 'Sub A', 'options': {}})


@pytest.mark.parametrize('version, ok', [(140000, False), (150000, True), (170002, True)])
def test_publisher_version_gate(version, ok):
    if ok:
        sc.check_publisher_version(version)
    else:
        with pytest.raises(SnapshotCopyError, match='requires PostgreSQL 15 or later on the '
                                                    'publisher.*runs PostgreSQL 14'):
            sc.check_publisher_version(version)


def test_check_publications():
    sc.check_publications(['a', 'b'], ['b', 'a'])
    with pytest.raises(SnapshotCopyError, match='publication.s. b do not exist'):
        sc.check_publications(['a', 'b'], ['a'])


def test_target_query_is_parameterised_and_version_aware():
    assert "attgenerated" in sc.target_query(150000)
    assert "attgenerated" not in sc.target_query(110000)
    assert sc.target_query(150000).count('%s') == 2


# ---- the marker of a copy in progress ----------------------------------------------------------

def test_snapshot_desired_creates_disabled_and_marked():
    created = sc.snapshot_desired({'name': 's', 'comment': 'mine', 'options': {}})
    assert created['options']['enabled'] is False and created['comment'] == sc.COPY_MARKER


@pytest.mark.parametrize('comment, enabled, expected', [
    (None, None, ['COMMENT ON SUBSCRIPTION "s" IS NULL', 'ALTER SUBSCRIPTION "s" ENABLE']),
    ('mine', True, ["COMMENT ON SUBSCRIPTION \"s\" IS 'mine'", 'ALTER SUBSCRIPTION "s" ENABLE']),
    ('', False, ['COMMENT ON SUBSCRIPTION "s" IS NULL']),
])
def test_finish_statements(comment, enabled, expected):
    options = {} if enabled is None else {'enabled': enabled}
    statements = sc.finish_statements({'name': 's', 'comment': comment, 'options': options})
    assert [render(s) for s in statements] == expected
    assert not any(s.autocommit for s in statements)


def test_is_interrupted():
    assert sc.is_interrupted({'comment': sc.COPY_MARKER}) is True
    assert sc.is_interrupted({'comment': 'other'}) is False
    assert sc.is_interrupted(None) is False


def test_recovery_statements_empty_first_then_drop_with_the_slot():
    current = {'options': {'slot_name': 's'}}
    statements = sc.recovery_statements('s', current, [('public', 'a'), ('x', 'b')])
    assert [render(s) for s in statements] == ['TRUNCATE "public"."a", "x"."b"',
                                               'DROP SUBSCRIPTION "s"']
    assert [s.autocommit for s in statements] == [False, True]
    assert [render(s) for s in sc.recovery_statements('s', current, [])] == [
        'DROP SUBSCRIPTION "s"']


def test_check_slot_free():
    sc.check_slot_free('s', None)
    with pytest.raises(SnapshotCopyError, match="already exists on the publisher .in use.*"
                                                "pg_drop_replication_slot\\('s'\\)"):
        sc.check_slot_free('s', {'slot_name': 's', 'active': True})


# ---- binary or text ----------------------------------------------------------------------------

def typed_entry(types, oids, columns=('id', 'v')):
    entry = sc.merge_published([pub_row('t', columns=columns)])[0]
    entry['types'], entry['type_oids'] = list(types), list(oids)
    return entry


@pytest.mark.parametrize('target_types, target_oids, same_major, expected', [
    (('bigint', 'text'), (20, 25), True, True),
    (('bigint', 'text'), (20, 25), False, False),          # another major version
    (('integer', 'text'), (23, 25), True, False),           # another type
    (('bigint', 'character varying(5)'), (20, 1043), True, False),
])
def test_binary_copyable(target_types, target_oids, same_major, expected):
    entry = typed_entry(('bigint', 'text'), (20, 25))
    tgt = dict(target(), types=list(target_types), type_oids=list(target_oids))
    assert sc.binary_copyable(entry, tgt, same_major) is expected


def test_binary_needs_built_in_types_and_a_known_type_for_every_column():
    user_type = typed_entry(('bigint', 'mood'), (20, 16400))
    tgt = dict(target(), types=['bigint', 'mood'], type_oids=[20, 16400])
    assert sc.binary_copyable(user_type, tgt, True) is False
    untyped = typed_entry((), ())
    assert sc.binary_copyable(untyped, tgt, True) is False


def test_plan_tables_binary_statements():
    published = sc.merge_published([dict(pub_row('t'), types=['bigint', 'text'],
                                         type_oids=[20, 25])])
    tgt = dict(target(), types=['bigint', 'text'], type_oids=[20, 25])
    [plan] = sc.plan_tables(published, [tgt], set(), same_major=True)
    assert plan['format'] == 'binary'
    assert render(plan['copy_out']).endswith(') TO STDOUT (FORMAT binary)')
    assert render(plan['copy_in']) == 'COPY "public"."t" ("id", "v") FROM STDIN (FORMAT binary)'
    [plan] = sc.plan_tables(published, [tgt], set(), same_major=False)
    assert plan['format'] == 'text' and render(plan['copy_in']).endswith('FROM STDIN')
