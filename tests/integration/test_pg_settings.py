"""tablesync.postgresql.pg_settings against a real server of its own (restarted here)."""
import psycopg2
import pytest

from pgcluster import Cluster
from runner import run_module, run_tasks

from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
    InvalidValue, Setting, canonical)

MODULE = 'tablesync.postgresql.pg_settings'


@pytest.fixture(scope='module')
def cluster(pg_base):
    c = Cluster('settings', pg_base).start()
    yield c
    c.stop('immediate')


def settings_task(cluster, settings, **extra):
    args = dict(cluster.login(), settings=settings)
    args.update(extra)
    return {'name': 'pg_settings', MODULE: args, 'ignore_errors': True}


def run_settings(cluster, settings, **kw):
    return run_module(MODULE, dict(cluster.login(), settings=settings), **kw)


def auto_conf(cluster):
    with open('%s/postgresql.auto.conf' % cluster.datadir) as f:
        return f.read()


def file_settings(cluster):
    return cluster.query('SELECT name, setting, applied FROM pg_file_settings ORDER BY seqno')


def pg_setting(cluster, name):
    return cluster.query('SELECT setting, pending_restart FROM pg_settings WHERE name = %s',
                         (name,))[0]


def test_postmaster_setting_waits_for_restart_until_restarted(cluster):
    assert cluster.query('SHOW wal_level') == [('logical',)]
    run = run_tasks([settings_task(cluster, {'wal_level': 'replica'}),
                     settings_task(cluster, {'wal_level': 'REPLICA'})])
    first, second = run.results
    assert first['changed'] and not first.get('failed'), first
    assert first['queries'] == ["ALTER SYSTEM SET \"wal_level\" = 'replica'",
                                'SELECT pg_catalog.pg_reload_conf()']
    assert first['restart_required'] is True
    assert first['pending_restart'] == ['wal_level']
    assert first['settings'] == {'wal_level': 'logical'}  # still running with the old value
    assert pg_setting(cluster, 'wal_level') == ('logical', True)

    assert second['changed'] is False and second['queries'] == []
    assert second['restart_required'] is True and second['pending_restart'] == ['wal_level']

    cluster.restart()
    third = run_settings(cluster, {'wal_level': 'replica'})
    assert third['changed'] is False and third['queries'] == []
    assert third['restart_required'] is False and third['pending_restart'] == []
    assert third['settings'] == {'wal_level': 'replica'}

    back = run_settings(cluster, {'wal_level': 'logical'})
    assert back['changed'] and back['restart_required']
    cluster.restart()
    assert cluster.query('SHOW wal_level') == [('logical',)]


def test_sighup_settings_apply_without_restart_and_any_spelling_is_a_no_op(cluster):
    run = run_tasks([
        settings_task(cluster, {'max_slot_wal_keep_size': '10GB', 'checkpoint_timeout': '15min',
                                'log_connections': True, 'shared_buffers': '64MB'}),
        settings_task(cluster, {'max_slot_wal_keep_size': '10240MB', 'checkpoint_timeout': 900,
                                'log_connections': 'yes', 'shared_buffers': 8192}),
        settings_task(cluster, {'max_slot_wal_keep_size': -1}),
        settings_task(cluster, {'max_slot_wal_keep_size': '-1'}),
    ])
    first, second, third, fourth = run.results
    assert first['changed'] and not first.get('failed'), first
    assert len(first['queries']) == 4  # shared_buffers already 64MB (configured by the harness)
    assert first['restart_required'] is False and first['pending_restart'] == []
    assert first['settings'] == {'max_slot_wal_keep_size': '10GB', 'checkpoint_timeout': '15min',
                                 'log_connections': 'on', 'shared_buffers': '64MB'}
    assert second['changed'] is False and second['queries'] == [], second['queries']
    assert third['changed'] and third['settings'] == {'max_slot_wal_keep_size': '-1'}
    assert fourth['changed'] is False and fourth['queries'] == []
    assert cluster.query('SHOW checkpoint_timeout') == [('15min',)]


def test_check_mode_changes_nothing(cluster):
    conf, files = auto_conf(cluster), file_settings(cluster)
    log_start = len(cluster.log_text())
    result = run_settings(cluster, {'wal_level': 'minimal', 'work_mem': '64MB',
                                    'archive_command': 'true'}, check=True, diff=True)
    assert result['changed'] and not result.get('failed'), result
    assert result['restart_required'] is True and result['pending_restart'] == ['wal_level']
    assert len(result['queries']) == 4
    assert result['settings']['work_mem'] == '4MB'
    assert result['diff']['before']['settings']['work_mem'] == '4MB'
    assert result['diff']['after']['settings'] == {'wal_level': 'minimal', 'work_mem': '64MB',
                                                   'archive_command': 'true'}
    assert auto_conf(cluster) == conf and file_settings(cluster) == files
    assert pg_setting(cluster, 'wal_level') == ('logical', False)
    logged = cluster.log_text()[log_start:]
    assert 'ALTER SYSTEM' not in logged and 'pg_reload_conf' not in logged


def test_unknown_settings_fail_naming_all_and_change_nothing(cluster):
    conf = auto_conf(cluster)
    result = run_settings(cluster, {'work_mem': '8MB', 'no_such_setting': 1,
                                    'another_typo': 'x'})
    assert result.get('failed')
    assert 'Unknown settings: another_typo, no_such_setting.' in result['msg']
    assert auto_conf(cluster) == conf


def test_invalid_values_fail_with_every_problem_and_change_nothing(cluster):
    conf = auto_conf(cluster)
    result = run_settings(cluster, {'work_mem': '8MB', 'shared_buffers': '1 parsec',
                                    'wal_level': 'max', 'fsync': 'perhaps',
                                    'max_connections': 10 ** 7})
    assert result.get('failed')
    for name in ('shared_buffers', 'wal_level', 'fsync', 'max_connections'):
        assert name in result['msg'], result['msg']
    assert len(result['problems']) == 4
    assert auto_conf(cluster) == conf


def test_value_refused_by_the_server_changes_nothing(cluster):
    conf = auto_conf(cluster)
    result = run_settings(cluster, {'work_mem': '8MB', 'TimeZone': 'Mars/Olympus_Mons'})
    assert result.get('failed')
    assert 'invalid value for parameter "TimeZone"' in result['msg']
    assert auto_conf(cluster) == conf

    # a second string refused after a first one was written: the first is restored
    result = run_settings(cluster, {'search_path': 'sales, public', 'work_mem': '8MB',
                                    'TimeZone': 'Mars/Olympus_Mons'})
    assert result.get('failed')
    assert 'Restored the settings already written (search_path)' in result['msg']
    assert result['queries'][-1] == 'ALTER SYSTEM RESET "search_path"'
    assert auto_conf(cluster) == conf


def test_list_values_and_quoting(cluster):
    run = run_tasks([
        settings_task(cluster, {'listen_addresses': "'127.0.0.1'",
                                'search_path': ['$user', 'public', 'My Schema'],
                                'log_destination': 'stderr'}),
        settings_task(cluster, {'listen_addresses': '127.0.0.1',
                                'search_path': '"$user", public, "My Schema"',
                                'log_destination': 'STDERR'}),
        settings_task(cluster, {'search_path': None}),
    ])
    first, second, third = run.results
    assert not first.get('failed'), first
    assert first['queries'] == [
        "ALTER SYSTEM SET \"search_path\" = '$user', 'public', 'My Schema'",
        'SELECT pg_catalog.pg_reload_conf()']
    assert second['changed'] is False and second['queries'] == []
    assert third['queries'][0] == 'ALTER SYSTEM RESET "search_path"'
    assert 'search_path' not in auto_conf(cluster)


# ---- the planner's value parsing agrees with the server's -------------------------------------

PARITY = [
    ('work_mem', ['1.5MB', '0.001GB', '1048576B', '100000', '0x1000', '0100000', '1e5',
                  '64 MB', '1TB', '2GB']),
    ('temp_buffers', ['1GB', '8004kB', '8012kB', '1000', '800.5', '16MB']),
    ('statement_timeout', ['1.5s', '2500us', '3500us', '1min', '0x10', '010', '1e3', '1d',
                           '0.5ms', '1.5min']),
    ('idle_session_timeout', ['1h', '3600s', '90s']),
    ('vacuum_cost_delay', ['2', '0.002s', '1500us', '2.5ms']),
    ('random_page_cost', ['1.1', '1.1000001', '4', '1e1']),
    ('synchronous_commit', ['TRUE', 'Remote_Apply', 'off', 'local', 'yes']),
    ('enable_seqscan', ['yes', 'of', 'ON', '1', 'FALSE']),
    ('search_path', ['"$user", public', 'a,b', '"My Schema", public']),
    ('DateStyle', ['iso, dmy', 'ISO, MDY']),
    ('work_mem', ['10 GiB', '08', 'lots', '1 G B', '99999999999', '10']),
    ('statement_timeout', ['5MB', '-1']),
    ('enable_seqscan', ['o', 'maybe']),
    ('synchronous_commit', ['sometimes']),
]


def _server_setting(conn, name, text):
    """(setting as pg_settings shows it, None) or (None, error) for SET name = text."""
    with conn.cursor() as cur:
        try:
            cur.execute('SELECT set_config(%s, %s, false)', (name, text))
            cur.execute('SELECT setting FROM pg_settings WHERE name = %s', (name,))
            return cur.fetchone()[0], None
        except psycopg2.Error as e:
            return None, str(e)
        finally:
            conn.rollback()


@pytest.mark.parametrize('name, values', PARITY, ids=[p[0] for p in PARITY])
def test_value_parsing_matches_the_server(cluster, name, values):
    conn = cluster.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT name, setting, unit, vartype, context, enumvals, min_val, '
                        'max_val FROM pg_settings WHERE name = %s', (name,))
            row = cur.fetchone()
        conn.rollback()
        setting = Setting(**dict(zip(('name', 'setting', 'unit', 'vartype', 'context',
                                      'enumvals', 'min_val', 'max_val'), row)))
        for text in values:
            server, error = _server_setting(conn, name, text)
            try:
                mine = canonical(setting, text)
                if setting.vartype in ('integer', 'real'):
                    low, high = float(setting.min_val), float(setting.max_val)
                    if not low <= float(mine) <= high:
                        raise InvalidValue('out of range')
            except InvalidValue as e:
                assert server is None, '%s = %r: server accepts it (%s), we refuse: %s' \
                    % (name, text, server, e)
                continue
            assert error is None, '%s = %r: we accept it, the server refuses: %s' \
                % (name, text, error)
            assert mine == canonical(setting, server), \
                '%s = %r: server %r, ours %r' % (name, text, server, mine)
    finally:
        conn.close()


def test_without_superuser_running_values_are_compared(cluster):
    cluster.execute("CREATE ROLE tuner LOGIN PASSWORD 'Tuner-pw-1';"
                    'GRANT ALTER SYSTEM ON PARAMETER work_mem TO tuner;'
                    'GRANT EXECUTE ON FUNCTION pg_reload_conf() TO tuner')
    login = dict(cluster.login(), login_user='tuner', login_password='Tuner-pw-1')
    tasks = [{'name': 'as tuner', MODULE: dict(login, settings={'work_mem': size}),
              'ignore_errors': True} for size in ('5MB', '5120kB')]
    first, second = run_tasks(tasks).results
    assert first['changed'] and not first.get('failed'), first
    assert any('pg_file_settings' in w for w in first['warnings'])
    assert first['settings'] == {'work_mem': '5MB'}
    assert second['changed'] is False and second['queries'] == []
    assert run_settings(cluster, {'work_mem': None})['changed']
