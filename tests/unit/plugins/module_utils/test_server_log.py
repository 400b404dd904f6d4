"""Reading the last apply error of each subscription from a server log (no database)."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.ops import server_log

P = '2026-11-24 20:10:01.123 UTC [4242] '
Q = '2026-11-24 20:10:06.456 UTC [4250] '
LOG = [
    P[:-7] + '9 UTC [100] LOG:  logical replication apply worker for subscription "tablesync_orders" has started',
    P + 'ERROR:  duplicate key value violates unique constraint "orders_pkey"',
    P + 'DETAIL:  Key (id)=(-1) already exists.',
    P + 'CONTEXT:  processing remote data for replication origin "pg_16399" during message type '
        '"INSERT" for replication target relation "app.orders" in transaction 745, finished at 0/1A2B3C4',
    '2026-11-24 20:10:01.130 UTC [90] LOG:  background worker "logical replication apply worker" '
    '(PID 4242) exited with exit code 1',
    # another subscription, no DETAIL
    '2026-11-24 20:10:02.000 UTC [4300] ERROR:  null value in column "x"',
    '2026-11-24 20:10:02.000 UTC [4300] CONTEXT:  processing remote data for replication origin '
    '"pg_17000" during message type "UPDATE" for replication target relation "a.b" column "x" '
    'in transaction 9',
    # a later error of the first one (interleaved with an unrelated line): the last one wins
    Q + 'ERROR:  duplicate key value violates unique constraint "orders_pkey"',
    '2026-11-24 20:10:06.457 UTC [77] LOG:  checkpoint starting: time',
    Q + 'DETAIL:  Key (id)=(-2) already exists.',
    Q + 'CONTEXT:  processing remote data for replication origin "pg_16399" during message type '
        '"INSERT" for replication target relation "app.orders" in transaction 801, finished at 0/1b00010',
    # a CONTEXT of a WARNING is not an error
    Q + 'WARNING:  something',
    Q + 'CONTEXT:  processing remote data for replication origin "pg_18000" during message type '
        '"COMMIT" in transaction 5, finished at 0/5',
]


def test_last_error_per_origin():
    found = server_log.last_apply_errors(LOG, ['pg_16399', 'pg_17000', 'pg_18000', 'pg_1'])
    assert set(found) == {'pg_16399', 'pg_17000'}
    assert found['pg_16399'] == {
        'time': '2026-11-24 20:10:06.456 UTC', 'message': 'duplicate key value violates unique '
        'constraint "orders_pkey"', 'detail': 'Key (id)=(-2) already exists.',
        'message_type': 'INSERT', 'relation': 'app.orders', 'column': None, 'transaction': 801,
        'finish_lsn': '0/1B00010', 'conflict': None}
    other = found['pg_17000']
    assert other['detail'] is None and other['column'] == 'x' and other['finish_lsn'] is None
    assert other['transaction'] == 9 and other['message_type'] == 'UPDATE'


def test_postgresql_18_conflict_detail_keeps_the_key_not_the_rows():
    r = '2026-12-06 00:41:51.643 UTC [13384] '
    lines = [
        r + 'ERROR:  conflict detected on relation "app.orders": conflict=insert_exists',
        r + 'DETAIL:  Key already exists in unique index "orders_pkey", modified in transaction 2952.',
        '\tKey (id)=(-1); existing local row (-1, 1, made on the subscriber); remote row (-1, 2, secret).',
        r + 'CONTEXT:  processing remote data for replication origin "pg_16476" during message type '
            '"INSERT" for replication target relation "app.orders" in transaction 4219, finished at 0/81CF5F8',
    ]
    error = server_log.last_apply_errors(lines, ['pg_16476'])['pg_16476']
    assert error['conflict'] == 'insert_exists' and error['relation'] == 'app.orders'
    assert error['detail'] == ('Key already exists in unique index "orders_pkey", modified in transaction 2952.\n'
                               'Key (id)=(-1)')
    assert 'secret' not in repr(error) and error['finish_lsn'] == '0/81CF5F8'


def test_only_wanted_origins():
    assert server_log.last_apply_errors(LOG, ['pg_1']) == {}
    assert server_log.last_apply_errors([], ['pg_16399']) == {}


def test_resolved_by_origin_progress():
    error = {'finish_lsn': '0/1B00010'}
    assert server_log.resolved(error, None) is None
    assert server_log.resolved(error, '0/1B0000F') is False
    assert server_log.resolved(error, '0/1B00010') is True
    assert server_log.resolved(error, '1/0') is True
    assert server_log.resolved({'finish_lsn': None}, '1/0') is None


@pytest.mark.parametrize('explicit, settings, current, path', [
    ('/x/pg.log', {}, 'log/a.log', '/x/pg.log'),
    ('auto', {'data_directory': '/d', 'logging_collector': 'on'}, 'log/a.log', '/d/log/a.log'),
    ('auto', {'logging_collector': 'on'}, '/abs/a.log', '/abs/a.log'),
    ('auto', {'logging_collector': 'on'}, 'log/a.log', None),
    ('auto', {'cluster_name': '15/main', 'logging_collector': 'off'}, None,
     '/var/log/postgresql/postgresql-15-main.log'),
    ('auto', {'cluster_name': '', 'logging_collector': 'off'}, None, None),
    ('auto', {'cluster_name': '17/main', 'logging_collector': 'on'}, None, None),
])
def test_log_file(explicit, settings, current, path):
    assert server_log.log_file(explicit, settings, current) == path


def test_read_tail_drops_the_partial_first_line(tmp_path):
    log = tmp_path / 'pg.log'
    log.write_text('first line\nsecond line\nthird\n')
    assert server_log.read_tail(str(log)) == ['first line', 'second line', 'third']
    assert server_log.read_tail(str(log), size=15) == ['third']
