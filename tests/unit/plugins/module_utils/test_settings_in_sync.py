"""settings_in_sync: the postgresql_server role skips pg_settings only when the module's own
plan, on the rows the discovery read, changes nothing and nothing waits; false in every doubt."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
    FILES, SETTINGS_QUERY, psql_settings_query, settings_in_sync)
from ansible_collections.tablesync.postgresql.plugins.filter.server_settings import (
    settings_in_sync as in_sync_filter, settings_read_query)
from ansible.errors import AnsibleFilterError

from test_settings import CATALOG


def row(key, **overrides):
    """A row of SETTINGS_QUERY (what json_agg returns) for ``key`` as the task names it."""
    name = key if key in CATALOG else key.lower()
    out = dict(key=key, name=name, source='configuration file', pending_restart=False,
               in_auto_conf=True, configured=None, fallback=None, unit=None, enumvals=None,
               min_val=None, max_val=None, conf_load_time='2026-12-07 17:00:00+00')
    out.update(CATALOG[name])
    out.setdefault('shown', out['setting'])
    out.setdefault('boot_val', out['setting'])
    out['configured'] = out['setting']
    out.update(overrides)
    return out


CONVERGED = [row('wal_level', setting='logical', configured='logical'),
             row('max_slot_wal_keep_size', setting='10240', configured='10GB')]
WANTED = {'wal_level': 'logical', 'max_slot_wal_keep_size': '10GB'}


def test_converged_settings_are_in_sync():
    assert settings_in_sync(WANTED, CONVERGED) is True


@pytest.mark.parametrize('desired', [
    {'wal_level': 'replica', 'max_slot_wal_keep_size': '10GB'},   # a value differs
    {'wal_level': 'logical', 'max_slot_wal_keep_size': '20GB'},   # in its unit too
    {'wal_level': 'logical', 'work_mem': '64MB'},                 # a name not read
    {'wal_level': 'nonsense'},                                    # invalid: the module says why
    {'block_size': 8192},                                         # cannot be set
    {},                                                           # nothing to decide
])
def test_anything_to_do_or_to_say_is_not_in_sync(desired):
    rows = CONVERGED + [row('block_size')]
    assert settings_in_sync(desired, rows) is False


def test_a_setting_waiting_for_a_restart_is_not_in_sync():
    # written by an earlier run, the restart not done yet: the module must report it
    rows = [row('wal_level', setting='replica', configured='logical', pending_restart=True),
            CONVERGED[1]]
    assert settings_in_sync(WANTED, rows) is False
    rows = [row('wal_level', setting='replica', configured='logical'), CONVERGED[1]]
    assert settings_in_sync(WANTED, rows) is False


def test_a_reload_owed_is_not_in_sync():
    # configured in a file, not reloaded: running 80 (MB) against configured 1GB
    rows = [row('min_wal_size', setting='80', configured='1GB')]
    assert settings_in_sync({'min_wal_size': '1GB'}, rows) is False
    rows = [row('min_wal_size', setting='1024', configured='1GB')]
    assert settings_in_sync({'min_wal_size': '1GB'}, rows) is True


def test_at_least_keeps_higher_values():
    rows = [row('max_connections', setting='200', configured='200')]
    assert settings_in_sync({'max_connections': 100}, rows, at_least=['max_connections']) is True
    assert settings_in_sync({'max_connections': 100}, rows) is False


def test_command_line_unreadable_files_and_no_read_are_not_in_sync():
    rows = [row('wal_level', setting='logical', configured=None, source='command line')]
    assert settings_in_sync({'wal_level': 'logical'}, rows) is False
    assert settings_in_sync(WANTED, CONVERGED, files_readable=False) is False
    assert settings_in_sync(WANTED, None) is False
    unknown = [dict(row('wal_level'), name=None)]
    assert settings_in_sync({'wal_level': 'logical'}, unknown) is False


def test_the_psql_query_is_the_module_query():
    query = psql_settings_query('tablesync_settings')
    assert "pg_catalog.string_to_array(:'tablesync_settings', ',')" in query
    assert FILES.strip() in query
    assert query == (SETTINGS_QUERY.replace('%(names)s::text[]',
                                            "pg_catalog.string_to_array(:'tablesync_settings', ',')")
                     .replace('{files}', FILES.strip()))
    assert '%(' not in query and '{files}' not in query


def test_filters():
    read = {'rows': CONVERGED, 'files_readable': True}
    assert in_sync_filter(read, WANTED) is True
    assert in_sync_filter(None, WANTED) is False
    assert in_sync_filter({'rows': None, 'files_readable': True}, WANTED) is False
    with pytest.raises(AnsibleFilterError):
        in_sync_filter(read, ['wal_level'])
    assert ":'names'" in settings_read_query('names')
    with pytest.raises(AnsibleFilterError):
        settings_read_query("x'; DROP")


def test_a_row_becomes_the_setting_the_module_reads():
    """Setting.from_row serves the module's read and this filter alike: every field, and None
    for a name the server does not have."""
    from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
        Setting)
    setting = Setting.from_row(CONVERGED[1])
    assert [getattr(setting, f) for f in Setting.FIELDS] == [CONVERGED[1].get(f)
                                                             for f in Setting.FIELDS]
    assert Setting.from_row(dict(key='no_such_setting', name=None)) is None
