"""The subscription planner: every transition, version gates, redaction and hostile names,
without a database."""
import pytest
from psycopg2 import sql

from ansible_collections.tablesync.postgresql.plugins.module_utils.logical import subscription as sub
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical import subscription_status as substatus
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import redact_text
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import quote_value
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import NameError_
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement, bind, render)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import (
    SLOT_NONE, SubscriptionError, desired_from_params, plan)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription_status import (
    current_from_row)

PG13, PG14, PG15, PG16, PG17, PG18 = 130000, 140000, 150000, 160000, 170000, 180000

PASSWORD = "s3cr'et \\ pa ss"
PUBLISHER = {'host': 'pub.example', 'port': 5432, 'dbname': 'shop', 'user': 'repl',
             'password': PASSWORD}
STORED_CONNINFO = "dbname=shop host=pub.example password='s3cr\\'et \\\\ pa ss' port=5432 user=repl"

HOSTILE_NAMES = [
    'Mixed Case',
    'with "quotes"',
    "semi;colon'; DROP TABLE x;--",
    'ünïcødé ✓',
    '100% sure',
    'x' * 63,
]


def desired(**params):
    params.setdefault('name', 'sub1')
    params.setdefault('state', 'present')
    params.setdefault('refresh', True)
    return desired_from_params(params)


def catalog_row(version=PG15, **over):
    """A pg_subscription row as catalog_query() returns it for ``version``."""
    row = {
        'oid': 16400, 'subname': 'sub1', 'owner': 'postgres', 'comment': None,
        'subenabled': True, 'subslotname': 'sub1', 'subsynccommit': 'off',
        'subpublications': ['pub1'], 'subconninfo': STORED_CONNINFO,
        'tables': [{'schema': 'public', 'table': 't1', 'state': 'r'}],
        'workers': [{'stat': {'pid': 42, 'relid': None, 'received_lsn': '0/1'},
                     'schema': None, 'table': None}],
        'errors': None,
    }
    if version >= PG14:
        row.update(subbinary=False, substream=False if version < PG16 else 'f')
    if version >= PG15:
        row.update(subtwophasestate='d', subdisableonerr=False,
                   errors={'subid': 16400, 'subname': 'sub1', 'apply_error_count': 0,
                           'sync_error_count': 0, 'stats_reset': None})
    if version >= PG16:
        row.update(suborigin='any', subrunasowner=False, subpasswordrequired=True)
    if version >= PG17:
        row.update(subfailover=False)
    row.update(over)
    return row


def current(version=PG15, **over):
    return current_from_row(catalog_row(version, **over), version)


def shown(statements):
    return [render(s) for s in statements]


def modes(statements):
    return [s.autocommit for s in statements]


# ---- creation --------------------------------------------------------------------------------

def test_create_minimal_runs_outside_transaction_and_masks_password():
    statements = plan(desired(publications=['pub1'], publisher=PUBLISHER), None, PG15)
    assert shown(statements) == [
        'CREATE SUBSCRIPTION "sub1" CONNECTION \'dbname=shop host=pub.example '
        "password=******** port=5432 user=repl' PUBLICATION \"pub1\""]
    assert modes(statements) == [True]
    assert isinstance(statements[0].params[0], Secret)
    assert statements[0].real_params()[0] == \
        "dbname=shop host=pub.example password='s3cr\\'et \\\\ pa ss' port=5432 user=repl"


def test_create_with_every_pg17_option_in_table_order():
    d = desired(publications=['b', 'a'], publisher={'host': 'h'}, enabled=True, slot_name='slot1',
                create_slot=True, copy_data=False, synchronous_commit=False, binary=True,
                streaming='parallel', two_phase=True, disable_on_error=True, origin='NONE',
                password_required=True, run_as_owner=False, failover=True)
    (create,) = plan(d, None, PG17)
    assert render(create) == (
        'CREATE SUBSCRIPTION "sub1" CONNECTION \'host=h\' PUBLICATION "a", "b" WITH ('
        "enabled = true, slot_name = 'slot1', synchronous_commit = 'off', binary = true, "
        "streaming = 'parallel', two_phase = true, disable_on_error = true, origin = 'none', "
        'password_required = true, run_as_owner = false, failover = true, create_slot = true, '
        'copy_data = false)')
    assert create.autocommit


def test_create_without_slot_runs_in_transaction():
    for options in ({'connect': False}, {'create_slot': False, 'slot_name': 'existing'},
                    {'slot_name': 'none', 'enabled': False, 'create_slot': False}):
        (create,) = plan(desired(publications=['p'], publisher={'host': 'h'}, **options),
                         None, PG15)
        assert not create.autocommit, options
    (create,) = plan(desired(publications=['p'], publisher={'host': 'h'}, slot_name='NONE',
                             enabled=False, create_slot=False), None, PG15)
    assert 'slot_name = NONE' in render(create)


def test_create_with_owner_and_comment():
    statements = plan(desired(publications=['p'], publisher={'host': 'h'}, owner='Repl Owner',
                              comment="it's"), None, PG15)
    assert shown(statements)[1:] == ['ALTER SUBSCRIPTION "sub1" OWNER TO "Repl Owner"',
                                     'COMMENT ON SUBSCRIPTION "sub1" IS \'it\'\'s\'']
    assert modes(statements) == [True, False, False]


@pytest.mark.parametrize('params, missing', [
    ({'publications': ['p']}, 'cannot be created without publisher$'),
    ({'publisher': {'host': 'h'}}, 'cannot be created without publications$'),
    ({}, 'sub1 does not exist and cannot be created without publications and publisher$'),
])
def test_create_needs_publications_and_publisher(params, missing):
    with pytest.raises(SubscriptionError, match=missing):
        plan(desired(**params), None, PG15)


def test_create_needs_slot_name_when_subscription_name_is_no_slot_name():
    d = desired(name='Orders Sub', publications=['p'], publisher={'host': 'h'})
    with pytest.raises(SubscriptionError, match='set slot_name'):
        plan(d, None, PG15)
    d = desired(name='Orders Sub', publications=['p'], publisher={'host': 'h'}, slot_name='orders')
    assert len(plan(d, None, PG15)) == 1
    d = desired(name='Orders Sub', publications=['p'], publisher={'host': 'h'}, connect=False)
    assert len(plan(d, None, PG15)) == 1


def test_create_slot_none_needs_disabled_and_no_slot():
    with pytest.raises(SubscriptionError, match='enabled: false and create_slot: false'):
        plan(desired(publications=['p'], publisher={'host': 'h'}, slot_name='NONE'), None, PG15)


@pytest.mark.parametrize('options, message', [
    ({'connect': False, 'enabled': True}, 'connect: false cannot be combined with enabled'),
    ({'connect': False, 'copy_data': True}, 'with copy_data'),
    ({'connect': False, 'create_slot': True}, 'with create_slot'),
    ({'slot_name': 'NONE', 'enabled': True}, 'slot_name: NONE cannot be combined with enabled'),
    ({'slot_name': 'none', 'create_slot': True}, 'with create_slot'),
])
def test_refused_combinations(options, message):
    with pytest.raises(SubscriptionError, match=message):
        desired(**options)


# ---- no change -------------------------------------------------------------------------------

@pytest.mark.parametrize('version', [PG13, PG14, PG15, PG16, PG17, PG18])
def test_matching_state_plans_nothing(version):
    d = desired(publications=['pub1'], publisher=PUBLISHER, enabled=True, slot_name='sub1',
                synchronous_commit='off', create_slot=True, copy_data=True, connect=True)
    assert plan(d, current(version), version) == []


def test_unset_options_are_not_compared():
    assert plan(desired(), current(binary=True, subenabled=False), PG15) == []


def test_synchronous_commit_aliases_are_no_change():
    assert plan(desired(synchronous_commit=True), current(subsynccommit='on'), PG15) == []
    assert plan(desired(synchronous_commit='off'), current(subsynccommit='false'), PG15) == []


# ---- options changed in place ----------------------------------------------------------------

@pytest.mark.parametrize('version, option, value, expected', [
    (PG15, 'synchronous_commit', 'remote_apply', "synchronous_commit = 'remote_apply'"),
    (PG15, 'binary', True, 'binary = true'),
    (PG15, 'streaming', True, "streaming = 'on'"),
    (PG16, 'streaming', 'parallel', "streaming = 'parallel'"),
    (PG15, 'disable_on_error', True, 'disable_on_error = true'),
    (PG15, 'slot_name', 'other_slot', "slot_name = 'other_slot'"),
    (PG16, 'origin', 'none', "origin = 'none'"),
    (PG16, 'password_required', False, 'password_required = false'),
    (PG16, 'run_as_owner', True, 'run_as_owner = true'),
])
def test_option_changed_with_set(version, option, value, expected):
    statements = plan(desired(**{option: value}), current(version), version)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" SET (%s)' % expected]
    assert modes(statements) == [False]


def test_several_options_in_one_set():
    statements = plan(desired(binary=True, streaming='on', synchronous_commit='local'),
                      current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" SET (synchronous_commit = \'local\', binary = true, '
        "streaming = 'on')"]


WAIT = ("SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE subname = 'sub1' "
        "AND pid IS NOT NULL")


def test_failover_needs_disabled_subscription_and_no_transaction():
    # DISABLE only asks the worker to stop: wait (committed, polling) until it has
    statements = plan(desired(failover=True), current(PG17), PG17)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" DISABLE', WAIT,
                                 'ALTER SUBSCRIPTION "sub1" SET (failover = true)',
                                 'ALTER SUBSCRIPTION "sub1" ENABLE']
    assert modes(statements) == [False, True, True, False]
    statements = plan(desired(failover=True, enabled=False), current(PG17), PG17)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" DISABLE', WAIT,
                                 'ALTER SUBSCRIPTION "sub1" SET (failover = true)']
    statements = plan(desired(failover=True), current(PG17, subenabled=False), PG17)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" SET (failover = true)']


@pytest.mark.parametrize('version', [PG15, PG16, PG17])
def test_two_phase_cannot_change_before_18(version):
    with pytest.raises(SubscriptionError, match='two_phase of subscription sub1 is false and '
                                                'cannot be changed in place on PostgreSQL %d '
                                                r'\(ALTER SUBSCRIPTION supports it from '
                                                'PostgreSQL 18\\): drop and re-create'
                       % (version // 10000)):
        plan(desired(two_phase=True), current(version), version)


def test_two_phase_changes_on_18_while_disabled():
    statements = plan(desired(two_phase=True), current(PG18), PG18)
    assert shown(statements)[1:3] == [WAIT, 'ALTER SUBSCRIPTION "sub1" SET (two_phase = true)']
    assert modes(statements) == [False, True, True, False]
    # only a change that needs the workers gone waits for them
    assert WAIT not in shown(plan(desired(enabled=False), current(PG18), PG18))
    assert plan(desired(two_phase=True), current(PG18, subtwophasestate='p'), PG18) == []
    assert plan(desired(two_phase=True), current(PG15, subtwophasestate='e'), PG15) == []


def test_enable_and_disable():
    assert shown(plan(desired(enabled=False), current(), PG15)) == \
        ['ALTER SUBSCRIPTION "sub1" DISABLE']
    assert shown(plan(desired(enabled=True), current(subenabled=False), PG15)) == \
        ['ALTER SUBSCRIPTION "sub1" ENABLE']


def test_slot_none_needs_disabled():
    with pytest.raises(SubscriptionError, match='cannot be enabled without a replication slot'):
        plan(desired(slot_name='NONE'), current(), PG15)
    with pytest.raises(SubscriptionError, match='cannot be enabled without a replication slot'):
        plan(desired(enabled=True), current(subenabled=False, subslotname=None), PG15)
    assert shown(plan(desired(slot_name='NONE', enabled=False), current(), PG15)) == [
        'ALTER SUBSCRIPTION "sub1" DISABLE', 'ALTER SUBSCRIPTION "sub1" SET (slot_name = NONE)']


def test_create_only_options_are_never_drift():
    assert plan(desired(create_slot=False, copy_data=False, connect=False, enabled=False),
                current(subenabled=False), PG15) == []


# ---- connection ------------------------------------------------------------------------------

def test_changed_password_is_detected_and_never_rendered():
    new = dict(PUBLISHER, password='n3w "pw"')
    statements = plan(desired(publisher=new), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" CONNECTION \'dbname=shop host=pub.example password=******** '
        "port=5432 user=repl'"]
    assert 'n3w' not in repr(statements) and 's3cr' not in repr(statements)
    assert 'n3w "pw"' in statements[0].secrets()


@pytest.mark.parametrize('change', [{'port': 5433}, {'sslmode': 'require'},
                                    {'options': {'keepalives_idle': 30}}, {'dbname': 'other'}])
def test_any_connection_change_is_detected(change):
    statements = plan(desired(publisher=dict(PUBLISHER, **change)), current(), PG15)
    assert len(statements) == 1 and 'CONNECTION' in render(statements[0])


def test_removed_connection_key_is_a_change():
    stored = STORED_CONNINFO + ' sslmode=require'
    statements = plan(desired(publisher=PUBLISHER), current(subconninfo=stored), PG15)
    assert 'sslmode' not in render(statements[0])


def test_stored_uri_compares_by_keywords():
    uri = 'postgresql://repl:s3cr%27et%20%5C%20pa%20ss@pub.example:5432/shop'
    assert plan(desired(publisher=PUBLISHER), current(subconninfo=uri), PG15) == []


def test_unreadable_conninfo_is_not_changed_and_unparseable_is_replaced():
    row = catalog_row()
    del row['subconninfo']
    cur = current_from_row(row, PG15)
    assert cur['conninfo_status'] == 'unreadable' and cur['publisher'] is None
    assert plan(desired(publisher=PUBLISHER), cur, PG15) == []
    cur = current(subconninfo="host='unterminated")
    assert cur['conninfo_status'] == 'unparseable'
    assert 'CONNECTION' in render(plan(desired(publisher=PUBLISHER), cur, PG15)[0])


def test_publisher_dict_normalisation():
    conn = sub.publisher_conninfo({'host': 'h', 'port': 5432, 'connect_timeout': 5,
                                   'options': {'keepalives': True, 'target_session_attrs':
                                               'read-write', 'sslcert': None}})
    assert conn.params == {'host': 'h', 'port': '5432', 'connect_timeout': '5',
                           'keepalives': '1', 'target_session_attrs': 'read-write'}
    assert conn.as_param() == conn.text  # no secret: a plain parameter


@pytest.mark.parametrize('publisher, message', [
    ({'host': 'h', 'options': {'password': 'x'}}, 'must not contain password'),
    ({'host': 'h', 'options': {'sslpassword': 'x'}}, 'must not contain sslpassword'),
    ({'host': 'h', 'options': {'host': 'x'}}, 'repeats publisher.host'),
    ({}, 'at least one'),
])
def test_publisher_dict_refusals(publisher, message):
    with pytest.raises(SubscriptionError, match=message):
        sub.publisher_conninfo(publisher)


def test_publisher_option_key_validated():
    with pytest.raises(ValueError, match='invalid connection option name'):
        sub.publisher_conninfo({'host': 'h', 'options': {'bad key': 1}})


# ---- publications ----------------------------------------------------------------------------

def test_added_publication_uses_add_with_refresh_outside_transaction():
    statements = plan(desired(publications=['pub1', 'pub2']), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" ADD PUBLICATION "pub2" WITH (refresh = true)']
    assert modes(statements) == [True]


def test_removed_publication_uses_drop():
    statements = plan(desired(publications=['pub1']),
                      current(subpublications=['pub1', 'pub2']), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" DROP PUBLICATION "pub2" WITH (refresh = true)']


def test_replaced_publications_use_set_and_copy_data():
    statements = plan(desired(publications=['new'], copy_data=False), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" SET PUBLICATION "new" WITH (refresh = true, copy_data = false)']


def test_before_14_only_set_publication():
    statements = plan(desired(publications=['pub1', 'pub2']), current(PG13), PG13)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" SET PUBLICATION "pub1", "pub2" WITH (refresh = true)']


def test_refresh_false_runs_in_transaction():
    statements = plan(desired(publications=['pub2'], refresh=False), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" SET PUBLICATION "pub2" WITH (refresh = false)']
    assert modes(statements) == [False]


def test_disabled_subscription_changes_publications_without_refresh():
    d = desired(publications=['pub2'])
    cur = current(subenabled=False)
    assert shown(plan(d, cur, PG15)) == [
        'ALTER SUBSCRIPTION "sub1" SET PUBLICATION "pub2" WITH (refresh = false)']
    assert sub.refresh_skipped(d, cur)
    assert not sub.refresh_skipped(d, current())


def test_publication_order_and_duplicates_do_not_matter():
    assert plan(desired(publications=['b', 'a', 'a']),
                current(subpublications=['a', 'b']), PG15) == []


def test_empty_publication_list_refused():
    with pytest.raises(SubscriptionError, match='at least one publication'):
        desired(publications=[])


# ---- owner, comment, ordering ----------------------------------------------------------------

def test_owner_and_comment():
    assert shown(plan(desired(owner='other'), current(), PG15)) == \
        ['ALTER SUBSCRIPTION "sub1" OWNER TO "other"']
    assert plan(desired(owner='postgres'), current(), PG15) == []
    assert shown(plan(desired(comment='c'), current(), PG15)) == \
        ['COMMENT ON SUBSCRIPTION "sub1" IS \'c\'']
    assert shown(plan(desired(comment=''), current(comment='c'), PG15)) == \
        ['COMMENT ON SUBSCRIPTION "sub1" IS NULL']
    assert plan(desired(comment=''), current(), PG15) == []
    assert plan(desired(comment='c'), current(comment='c'), PG15) == []


def test_statement_order_for_everything_at_once():
    d = desired(publisher=dict(PUBLISHER, port=6543), publications=['pub1', 'pub9'], binary=True,
                enabled=True, owner='o', comment='c', failover=True)
    statements = plan(d, current(PG17, subenabled=False), PG17)
    assert [s.split(' (')[0].split(' \'')[0] for s in shown(statements)] == [
        'ALTER SUBSCRIPTION "sub1" CONNECTION',
        'ALTER SUBSCRIPTION "sub1" SET',
        'ALTER SUBSCRIPTION "sub1" ENABLE',
        'ALTER SUBSCRIPTION "sub1" ADD PUBLICATION "pub9" WITH',
        'ALTER SUBSCRIPTION "sub1" OWNER TO "o"',
        'COMMENT ON SUBSCRIPTION "sub1" IS',
    ]


# ---- absent ----------------------------------------------------------------------------------

def test_drop_with_slot_outside_transaction():
    statements = plan(desired(state='absent'), current(), PG15)
    assert shown(statements) == ['DROP SUBSCRIPTION "sub1"'] and modes(statements) == [True]


def test_drop_without_slot_in_transaction_and_missing_is_noop():
    statements = plan(desired(state='absent'), current(subslotname=None, subenabled=False), PG15)
    assert modes(statements) == [False]
    assert plan(desired(state='absent'), None, PG15) == []


def test_absent_ignores_option_version_gates():
    assert len(plan(desired(state='absent', failover=True), current(), PG15)) == 1


def test_detach_and_drop():
    assert shown(sub.plan_detach_and_drop('sub1', current())) == [
        'ALTER SUBSCRIPTION "sub1" DISABLE', 'ALTER SUBSCRIPTION "sub1" SET (slot_name = NONE)',
        'DROP SUBSCRIPTION "sub1"']
    assert shown(sub.plan_detach_and_drop('sub1', current(subenabled=False))) == [
        'ALTER SUBSCRIPTION "sub1" SET (slot_name = NONE)', 'DROP SUBSCRIPTION "sub1"']
    assert all(not s.autocommit for s in sub.plan_detach_and_drop('sub1', current()))


@pytest.mark.parametrize('message, kind', [
    ('DROP SUBSCRIPTION "s": could not connect to publisher when attempting to drop replication '
     'slot "s": connection to server at "127.0.0.1", port 1 failed: Connection refused',
     'unreachable'),
    ('could not connect to publisher when attempting to drop the replication slot "s"',
     'unreachable'),
    ('could not drop replication slot "s" on publisher: ERROR:  replication slot "s" does not '
     'exist', 'slot_missing'),
    ('could not drop replication slot "s" on publisher: ERROR:  replication slot "s" is active '
     'for PID 4', None),
    ('permission denied', None),
])
def test_classify_drop_error(message, kind):
    assert substatus.classify_drop_error(message) == kind


def test_slot_left_behind():
    assert substatus.slot_left_behind(current()) == {
        'name': 'sub1', 'host': 'pub.example', 'port': '5432', 'dbname': 'shop',
        'sync_slots_prefix': None}
    pending = current(tables=[{'schema': 'public', 'table': 't', 'state': 'd'}])
    assert substatus.slot_left_behind(pending)['sync_slots_prefix'] == 'pg_16400_sync_'
    assert substatus.slot_left_behind(current(subslotname=None)) is None


# ---- refreshed -------------------------------------------------------------------------------

def test_refreshed_appends_refresh():
    statements = plan(desired(state='refreshed'), current(), PG15)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" REFRESH PUBLICATION']
    assert modes(statements) == [True]
    statements = plan(desired(state='refreshed', copy_data=False), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" REFRESH PUBLICATION WITH (copy_data = false)']


def test_refreshed_with_publication_change_refreshes_once():
    statements = plan(desired(state='refreshed', publications=['pub2']), current(), PG15)
    assert shown(statements) == [
        'ALTER SUBSCRIPTION "sub1" SET PUBLICATION "pub2" WITH (refresh = true)']
    statements = plan(desired(state='refreshed', publications=['pub2'], refresh=False),
                      current(), PG15)
    assert len(statements) == 2 and 'REFRESH PUBLICATION' in render(statements[1])


def test_refreshed_needs_enabled_subscription():
    with pytest.raises(SubscriptionError, match='needs an enabled subscription'):
        plan(desired(state='refreshed'), current(subenabled=False), PG15)
    with pytest.raises(SubscriptionError, match='needs an enabled subscription'):
        plan(desired(state='refreshed', enabled=False), current(), PG15)


def test_refreshed_creates_when_missing_without_refresh():
    statements = plan(desired(state='refreshed', publications=['p'], publisher={'host': 'h'}),
                      None, PG15)
    assert len(statements) == 1 and render(statements[0]).startswith('CREATE SUBSCRIPTION')


# ---- version gates ---------------------------------------------------------------------------

@pytest.mark.parametrize('option, value, needs', [
    ('binary', True, 'Subscription option binary requires PostgreSQL 14'),
    ('streaming', 'on', 'Subscription option streaming requires PostgreSQL 14'),
    ('streaming', 'parallel', 'Subscription option streaming = parallel requires PostgreSQL 16'),
    ('two_phase', False, 'Subscription option two_phase requires PostgreSQL 15'),
    ('disable_on_error', True, 'Subscription option disable_on_error requires PostgreSQL 15'),
    ('origin', 'any', 'Subscription option origin requires PostgreSQL 16'),
    ('run_as_owner', False, 'Subscription option run_as_owner requires PostgreSQL 16'),
    ('password_required', True, 'Subscription option password_required requires PostgreSQL 16'),
    ('failover', False, 'Subscription option failover requires PostgreSQL 17'),
])
def test_version_gates(option, value, needs):
    d = desired(**{option: value})
    minimum = max(v for v, _f in sub.required_versions(d))
    with pytest.raises(SubscriptionError, match=needs + ' or later; the server runs PostgreSQL'):
        sub.check_versions(d, minimum - 1)
    sub.check_versions(d, minimum)
    with pytest.raises(SubscriptionError, match='requires PostgreSQL'):
        plan(d, current(), minimum - 10000)


def test_gates_come_from_the_one_table():
    for option in sub.OPTIONS:
        assert option.alter_since is None or option.alter_since >= option.since
    assert sub.required_versions(desired())[0] == (100000, 'Logical replication subscriptions')
    with pytest.raises(SubscriptionError, match='requires PostgreSQL 10'):
        sub.check_versions(desired(), 90600)


# ---- reading the catalog ---------------------------------------------------------------------

@pytest.mark.parametrize('version, present, absent', [
    (100000, ['subenabled', 'subsynccommit'], ['subbinary', 'substream', 'subtwophasestate']),
    (PG14, ['subbinary', 'substream'], ['subtwophasestate', 'subdisableonerr']),
    (PG15, ['subtwophasestate', 'subdisableonerr', 'pg_stat_subscription_stats'],
     ['suborigin', 'subfailover']),
    (PG16, ['suborigin', 'subrunasowner', 'subpasswordrequired'], ['subfailover']),
    (PG17, ['subfailover'], []),
])
def test_catalog_query_reads_columns_of_the_version(version, present, absent):
    text = render(Statement(substatus.catalog_query(version, True), ['sub1']))
    for column in present:
        assert column in text
    for column in absent:
        assert column not in text
    assert text.endswith("AND s.subname = 'sub1'")
    assert 'subconninfo' in text
    assert 'subconninfo' not in render(Statement(substatus.catalog_query(version, False), ['x']))
    if version < PG15:
        assert 'pg_stat_subscription_stats' not in text


def test_catalog_row_decoding_per_version():
    assert current(PG15, substream=True)['options']['streaming'] == 'on'
    assert current(PG16, substream='p')['options']['streaming'] == 'parallel'
    assert current(PG16, substream='t')['options']['streaming'] == 'on'
    assert current(PG15, subtwophasestate='p')['options']['two_phase'] is True
    assert current(PG15, subslotname=None)['options']['slot_name'] == SLOT_NONE
    assert current(PG16, suborigin='NONE')['options']['origin'] == 'none'
    assert set(current(PG13)['options']) == {'enabled', 'slot_name', 'synchronous_commit'}
    assert 'failover' in current(PG17)['options']


def test_tables_workers_errors():
    cur = current(tables=[{'schema': 'My Schema', 'table': 'a.b', 'state': 'd'},
                          {'schema': 'public', 'table': 't', 'state': 'r'}],
                  workers=[{'stat': {'pid': 1, 'relid': 99}, 'schema': 'public', 'table': 't'},
                           {'stat': {'pid': 2, 'relid': None, 'worker_type': 'apply'},
                            'schema': None, 'table': None}])
    assert cur['tables'] == [
        {'name': 'My Schema."a.b"', 'state': 'data copy', 'state_code': 'd'},
        {'name': 'public.t', 'state': 'ready', 'state_code': 'r'}]
    assert [(w['type'], w['table']) for w in cur['workers']] == [
        ('table synchronization', 'public.t'), ('apply', None)]
    assert cur['errors'] == {'apply_error_count': 0, 'sync_error_count': 0, 'stats_reset': None}


# ---- redaction -------------------------------------------------------------------------------

# "''" as a password is masked too, but the text around it naturally contains '' (SQL quoting)
HOSTILE_PASSWORDS = ["it's", 'back\\slash', "mix'\\ed and spaced", '%s %% {}', 'ünï ✓']


@pytest.mark.parametrize('password', HOSTILE_PASSWORDS + ["''"])
def test_password_masked_in_rendered_conninfo(password):
    d = desired(publications=['p'], publisher=dict(PUBLISHER, password=password))
    assert "password=******** port=5432" in render(plan(d, None, PG15)[0])


@pytest.mark.parametrize('password', HOSTILE_PASSWORDS)
def test_password_never_rendered_or_summarised(password):
    d = desired(publications=['pub1'], publisher=dict(PUBLISHER, password=password))
    statements = plan(d, None, PG15) + plan(d, current(), PG15)
    assert len(statements) == 2
    cur = current(subconninfo=d['publisher'].text)
    before, after = substatus.diff_summaries(current(), cur, True)
    texts = shown(statements) + [repr(statements), repr(d['publisher']), repr(before),
                                 repr(after), repr(substatus.summarize(cur)),
                                 repr(substatus.slot_left_behind(cur))]
    for text in texts:
        for form in (password, password.replace("'", "''"), password.replace('\\', '\\\\')):
            assert form not in text
    assert after['publisher']['password'] == '******** (changed)'
    assert before['publisher']['password'] == '********'


@pytest.mark.parametrize('password', HOSTILE_PASSWORDS)
def test_executor_redaction_covers_quoted_echoes(password):
    conninfo = sub.publisher_conninfo(dict(PUBLISHER, password=password))
    statement = sub.connection_statement('s', conninfo)
    sql_literal = "'%s'" % conninfo.text.replace("'", "''")
    echoes = ['ERROR: syntax error at or near %s' % sql_literal,
              'LINE 1: ... CONNECTION E%s' % sql_literal.replace('\\', '\\\\'),
              'bad password %s here' % password,
              'option password=%s' % quote_value(password)]
    for echo in echoes:
        redacted = redact_text(echo, statement.secrets())
        assert password not in redacted, (echo, redacted)
        assert '********' in redacted


def test_secret_display_and_bind():
    secret = Secret('host=h password=x', display='host=h password=********', sensitive=['x'])
    statement = Statement(sql.SQL('ALTER SUBSCRIPTION {} CONNECTION %s').format(
        sql.Identifier('100% sure')), [secret])
    assert render(statement) == \
        'ALTER SUBSCRIPTION "100% sure" CONNECTION \'host=h password=********\''
    assert statement.secrets() == ['host=h password=x', 'x']
    bound = bind(statement)
    literals = [part for part in bound.seq if isinstance(part, sql.Composed)
                for part in part.seq if isinstance(part, sql.Literal)]
    assert [lit.wrapped for lit in literals] == ['host=h password=x']
    assert Secret('v') == Secret('v') and Secret('v') != Secret('v', display='d')


# ---- names and input validation --------------------------------------------------------------

@pytest.mark.parametrize('name', HOSTILE_NAMES)
def test_hostile_names_are_quoted_identifiers(name):
    d = desired(name=name, publications=[name], publisher={'host': 'h'}, slot_name='s',
                owner=name)
    statements = plan(d, None, PG15)
    quoted = '"%s"' % name.replace('"', '""')
    assert shown(statements)[0].startswith('CREATE SUBSCRIPTION %s CONNECTION' % quoted)
    assert shown(statements)[0].endswith('PUBLICATION %s WITH (slot_name = \'s\')' % quoted)
    assert shown(statements)[1] == 'ALTER SUBSCRIPTION %s OWNER TO %s' % (quoted, quoted)
    assert shown(plan(desired(name=name, state='absent'), current(subname=name), PG15)) == \
        ['DROP SUBSCRIPTION %s' % quoted]


@pytest.mark.parametrize('field', ['name', 'publications', 'owner'])
def test_names_longer_than_63_bytes_refused(field):
    long_name = 'ü' * 32  # 64 bytes
    params = {field: [long_name] if field == 'publications' else long_name}
    if field != 'name':
        params['name'] = 'sub1'
    with pytest.raises(NameError_, match='longer than 63 bytes'):
        desired(**params)


def test_empty_and_nul_names_refused():
    with pytest.raises(NameError_):
        desired(name='')
    with pytest.raises(NameError_):
        desired(publications=['a\x00b'])


@pytest.mark.parametrize('value, normalised', [
    (True, 'on'), (False, 'off'), ('ON', 'on'), ('remote_apply', 'remote_apply'),
    ('yes', 'on'), ('0', 'off')])
def test_synchronous_commit_values(value, normalised):
    assert desired(synchronous_commit=value)['options']['synchronous_commit'] == normalised


@pytest.mark.parametrize('value, normalised', [
    (True, 'on'), (False, 'off'), ('Parallel', 'parallel'), ('off', 'off')])
def test_streaming_values(value, normalised):
    assert desired(streaming=value)['options']['streaming'] == normalised


@pytest.mark.parametrize('option, value', [
    ('synchronous_commit', 'sometimes'), ('streaming', 'maybe'), ('origin', 'all')])
def test_bad_choice_values(option, value):
    with pytest.raises(SubscriptionError, match='must be one of'):
        desired(**{option: value})


@pytest.mark.parametrize('slot', ['Upper', 'with space', 'dash-ed', '', 'x' * 64, 'ü'])
def test_bad_slot_names(slot):
    with pytest.raises(SubscriptionError, match='not a valid replication slot name'):
        desired(slot_name=slot)


def test_slot_name_none_spellings():
    for spelling in ('NONE', 'none', 'None'):
        assert desired(slot_name=spelling, enabled=False)['options']['slot_name'] == SLOT_NONE


# ---- waiting for sync ------------------------------------------------------------------------

def tables(*codes):
    return [{'schema': 'public', 'table': 't%d' % i, 'state': c} for i, c in enumerate(codes)]


def test_sync_status():
    base = {'sync_error_count': 0, 'apply_error_count': 0}
    assert substatus.sync_status(current(tables=tables('r', 'r')), base)[0] == 'done'
    assert substatus.sync_status(current(tables=[]), base)[0] == 'done'
    assert substatus.sync_status(current(tables=tables('r', 's')), base) == \
        ('waiting', '1 of 2 tables not ready')
    assert substatus.sync_status(current(tables=tables('d')), None)[0] == 'waiting'
    errors = {'sync_error_count': 2, 'apply_error_count': 0}
    status, reason = substatus.sync_status(current(tables=tables('d'), errors=errors), base)
    assert status == 'failed' and 'sync_error_count rose from 0 to 2' in reason
    assert substatus.sync_status(current(tables=tables('d'), errors=errors), errors)[0] == 'waiting'
    assert substatus.sync_status(current(subenabled=False), base)[0] == 'failed'
    assert substatus.sync_status(None, base)[0] == 'failed'


def test_sync_status_tolerates_transient_worker_errors():
    base = {'sync_error_count': 0, 'apply_error_count': 0}
    two = {'sync_error_count': 2, 'apply_error_count': 0}
    three = {'sync_error_count': 3, 'apply_error_count': 0}
    tolerated = substatus.SYNC_ERRORS_TOLERATED
    assert substatus.sync_status(current(tables=tables('d'), errors=two), base, tolerated)[0] == 'waiting'
    status, reason = substatus.sync_status(current(tables=tables('d'), errors=three), base, tolerated)
    assert status == 'failed' and 'sync_error_count rose from 0 to 3' in reason
    apply = {'sync_error_count': 0, 'apply_error_count': 3}
    assert substatus.sync_status(current(tables=tables('r'), errors=apply), base, tolerated)[0] == 'failed'


def test_table_progress_and_error_total():
    assert substatus.table_progress(None) is None
    before = current(tables=tables('i', 'd'))
    after = current(tables=tables('i', 's'))
    assert substatus.table_progress(before) != substatus.table_progress(after)
    assert substatus.table_progress(before) == substatus.table_progress(current(tables=tables('i', 'd')))
    assert substatus.error_total(None) == 0
    assert substatus.error_total({'sync_error_count': 2, 'apply_error_count': None}) == 2
    assert substatus.error_total({'sync_error_count': 2, 'apply_error_count': 1}) == 3


def test_publication_name_with_a_backslash_is_refused():
    params = dict(name='s', state='present', publications=['a\\b'], publisher=dict(host='h'))
    with pytest.raises(sub.SubscriptionError, match='backslash'):
        sub.desired_from_params(params)
    assert sub.check_publication_name('Sales "pub"; x') == 'Sales "pub"; x'


def test_sync_failure_message_lists_tables_and_points_to_the_log():
    errors = {'sync_error_count': 3, 'apply_error_count': 0}
    msg = substatus.sync_failure_message('sub1', current(tables=tables('r', 'd'), errors=errors,
                                                         workers=[]), 'timed out', 30.2)
    assert 'after 30s: timed out.' in msg
    assert 'public.t0: ready (r), public.t1: data copy (d)' in msg
    assert 'sync_error_count=3, apply_error_count=0' in msg
    assert 'No replication worker is running' in msg
    assert "only in the subscriber's server log" in msg


# ---- check-mode prediction -------------------------------------------------------------------

def test_predict_create_shows_defaults_of_the_version():
    d = desired(publications=['p'], publisher=PUBLISHER, binary=True)
    after = substatus.summarize(substatus.predict(d, None, PG15, 'postgres'))
    assert after['slot_name'] == 'sub1' and after['enabled'] is True
    assert after['options'] == {'synchronous_commit': 'off', 'binary': True, 'streaming': 'off',
                                'two_phase': False, 'disable_on_error': False}
    assert after['publisher']['password'] == '********'
    after18 = substatus.summarize(substatus.predict(desired(publications=['p'], publisher={'host': 'h'}),
                                                    None, PG18))
    assert after18['options']['streaming'] == 'parallel'
    assert substatus.predict(desired(state='absent'), current(), PG15) is None
    no_slot = substatus.predict(desired(publications=['p'], publisher={'host': 'h'}, slot_name='NONE',
                                        enabled=False, create_slot=False), None, PG15)
    assert no_slot['options']['slot_name'] == SLOT_NONE and no_slot['options']['enabled'] is False
    offline = substatus.predict(desired(publications=['p'], publisher={'host': 'h'}, connect=False),
                                None, PG15)
    assert offline['options']['enabled'] is False and 'connect' not in offline['options']


def test_predict_alter_matches_plan():
    d = desired(enabled=False, binary=True, publications=['x'], comment='', owner='o')
    after = substatus.predict(d, current(comment='c'), PG15)
    assert plan(desired(enabled=False, binary=True, publications=['x'], comment='', owner='o'),
                after, PG15) == []


# ---- skipping a failing transaction (ALTER SUBSCRIPTION ... SKIP) -----------------------------

@pytest.mark.parametrize('given, normalised', [
    ('0/14c0378', '0/14C0378'), (' 0/014C0378 ', '0/14C0378'), ('1A/0', '1A/0'),
    ('none', sub.SKIP_NONE), ('NONE', sub.SKIP_NONE)])
def test_skip_lsn_normalised(given, normalised):
    assert desired(skip_lsn=given)['skip_lsn'] == normalised


@pytest.mark.parametrize('given', ['0/0', '14C0378', '0/1234567890', 'x/1', '0/1; DROP', ''])
def test_skip_lsn_refused(given):
    with pytest.raises(SubscriptionError):
        desired(skip_lsn=given)


def test_skip_planned_with_the_lsn_as_parameter():
    statements = plan(desired(skip_lsn='0/14c0378'), current(), PG15)
    assert shown(statements) == ["ALTER SUBSCRIPTION \"sub1\" SKIP (lsn = '0/14C0378')"]
    assert modes(statements) == [False]


def test_skip_is_idempotent():
    lsn = 0x14C0378
    # already pending with this LSN
    assert plan(desired(skip_lsn='0/14C0378'), current(subskiplsn='0/14C0378'), PG15) == []
    # the subscription already applied (or skipped) past it
    assert plan(desired(skip_lsn='0/14C0378'), current(origin_lsn='0/14C0378'), PG15) == []
    assert plan(desired(skip_lsn='0/14C0378'), current(origin_lsn='0/2000000'), PG15) == []
    # not yet reached: skip; origin unknown (not readable): skip (PostgreSQL checks)
    assert len(plan(desired(skip_lsn='0/14C0378'), current(origin_lsn='0/14C0377'), PG15)) == 1
    assert len(plan(desired(skip_lsn='0/14C0378'), current(), PG15)) == 1
    # another LSN pending: replaced
    assert shown(plan(desired(skip_lsn='0/14C0378'), current(subskiplsn='0/1000000'), PG15)) == [
        "ALTER SUBSCRIPTION \"sub1\" SKIP (lsn = '0/14C0378')"]
    assert current(subskiplsn='0/0')['skip_lsn'] is None
    assert current(subskiplsn='0/14C0378')['skip_lsn'] == lsn


def test_skip_none_clears_only_a_pending_skip():
    assert plan(desired(skip_lsn='NONE'), current(), PG15) == []
    assert shown(plan(desired(skip_lsn='none'), current(subskiplsn='0/5'), PG15)) == [
        'ALTER SUBSCRIPTION "sub1" SKIP (lsn = NONE)']


def test_skip_needs_15_and_an_existing_subscription():
    assert (PG15, 'skip_lsn (ALTER SUBSCRIPTION ... SKIP)') in sub.required_versions(
        desired(skip_lsn='0/5'))
    with pytest.raises(SubscriptionError, match='PostgreSQL 15'):
        plan(desired(skip_lsn='0/5'), current(PG14), PG14)
    with pytest.raises(SubscriptionError, match='existing subscription'):
        plan(desired(skip_lsn='0/5', publications=['pub1'], publisher=PUBLISHER), None, PG15)


def test_skip_after_other_changes_and_in_the_summary():
    statements = plan(desired(skip_lsn='0/5', enabled=True), current(subenabled=False), PG15)
    assert shown(statements) == ['ALTER SUBSCRIPTION "sub1" ENABLE',
                                 "ALTER SUBSCRIPTION \"sub1\" SKIP (lsn = '0/5')"]
    cur = current(subskiplsn='0/0')
    after = substatus.predict(desired(skip_lsn='0/AB'), cur, PG15)
    assert substatus.summarize(after)['skip_lsn'] == '0/AB'
    assert substatus.summarize(cur)['skip_lsn'] is None


def test_catalog_query_reads_skip_and_origin_from_15():
    assert 'subskiplsn' not in render(Statement(substatus.catalog_query(PG14, True, True), ['x']))
    text15 = render(Statement(substatus.catalog_query(PG15, True, False), ['x']))
    assert 'subskiplsn' in text15 and 'pg_replication_origin_status' not in text15
    text = render(Statement(substatus.catalog_query(PG15, True, True), ['x']))
    assert 'pg_replication_origin_status' in text


# ---- a replication slot lost on the publisher -------------------------------------------------

def test_lost_slot_status():
    assert sub.lost_slot_status(None) == 'missing'
    assert sub.lost_slot_status({'wal_status': 'lost'}) == 'lost'
    # PostgreSQL 18 invalidates an idle slot whose WAL is still there
    idle = {'wal_status': 'reserved', 'invalidation_reason': 'idle_timeout'}
    assert sub.lost_slot_status(idle) == 'lost'
    assert sub.invalidation_cause(idle) == ('idle_timeout: it was idle longer than '
                                            'idle_replication_slot_timeout allows')
    assert sub.invalidation_cause({'wal_status': 'lost', 'invalidation_reason': 'wal_removed'}).startswith(
        'wal_removed: the WAL it needed was removed')
    assert sub.invalidation_cause({'wal_status': 'lost'}).startswith('wal_status lost: the WAL')
    for usable in ('reserved', 'extended', 'unreserved', None):
        assert sub.lost_slot_status({'wal_status': usable}) is None


def test_on_lost_slot_choices():
    assert desired()['on_lost_slot'] == 'ignore'
    assert desired(on_lost_slot='rebuild')['on_lost_slot'] == 'rebuild'
    with pytest.raises(SubscriptionError, match='on_lost_slot'):
        desired(on_lost_slot='drop')


def test_rebuild_drops_detached_and_truncates_in_one_transaction_then_creates():
    want = desired(publications=['pub1'], publisher=PUBLISHER, slot_name='sub1_slot',
                   copy_data=False, binary=True)
    first, then = sub.plan_rebuild(want, current(), [('sales', 'orders'), ('My Schema', 'a.b')])
    assert shown(first) == [
        'ALTER SUBSCRIPTION "sub1" DISABLE',
        'ALTER SUBSCRIPTION "sub1" SET (slot_name = NONE)',
        'DROP SUBSCRIPTION "sub1"',
        'TRUNCATE "sales"."orders", "My Schema"."a.b"',
    ]
    assert modes(first) == [False] * 4  # one transaction: all or nothing
    assert len(then) == 1 and modes(then) == [True]
    text = shown(then)[0]
    assert text.startswith('CREATE SUBSCRIPTION "sub1" CONNECTION')
    # the copy is never turned off for a rebuild: the tables were just emptied
    assert 'copy_data' not in text and "binary = true" in text and "slot_name = 'sub1_slot'" in text
    assert PASSWORD not in text


def test_rebuild_of_a_disabled_subscription_without_tables():
    first, _then = sub.plan_rebuild(desired(publications=['pub1'], publisher=PUBLISHER),
                                    current(subenabled=False), [])
    assert shown(first) == ['ALTER SUBSCRIPTION "sub1" SET (slot_name = NONE)',
                            'DROP SUBSCRIPTION "sub1"']


def test_rebuild_needs_what_creation_needs():
    with pytest.raises(SubscriptionError, match='publisher'):
        sub.plan_rebuild(desired(publications=['pub1']), current(), [('a', 'b')])


def test_tables_to_empty_are_the_published_ones_not_yet_subscribed():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import tables_to_empty
    subscribed = [{'name': 'sales.orders', 'state': 'ready', 'state_code': 'r'},
                  {'name': 'Sales.Order Items', 'state': 'ready', 'state_code': 'r'}]
    published = [('sales', 'shipments'), ('sales', 'orders'), ('Sales', 'Order Items'),
                 ('sales', 'shipments'), ('sales', 'customers')]
    assert tables_to_empty(published, subscribed) == [('sales', 'customers'), ('sales', 'shipments')]
    assert tables_to_empty([('sales', 'orders')], subscribed) == []
    assert tables_to_empty([], []) == []
