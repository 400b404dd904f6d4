"""Settings planner: values compared the way PostgreSQL reads them, every transition, no-op."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
    InvalidValue, Setting, SettingsError, canonical, convert_to_base_unit, desired_value,
    parse_bool, plan_settings, split_list, unquote_conf, waits_for_restart)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render


# pg_settings rows of PostgreSQL 15 (the columns the planner uses)
CATALOG = {
    'wal_level': dict(vartype='enum', context='postmaster', setting='replica',
                      enumvals=['minimal', 'replica', 'logical'], boot_val='replica'),
    'synchronous_commit': dict(vartype='enum', context='user', setting='on',
                               enumvals=['local', 'remote_write', 'remote_apply', 'on', 'off']),
    'min_wal_size': dict(vartype='integer', unit='MB', context='sighup', setting='80',
                         min_val='2', max_val='2147483647'),
    'max_slot_wal_keep_size': dict(vartype='integer', unit='MB', context='sighup',
                                   setting='-1', min_val='-1', max_val='2147483647',
                                   boot_val='-1'),
    'shared_buffers': dict(vartype='integer', unit='8kB', context='postmaster', setting='16384',
                           min_val='16', max_val='1073741823', boot_val='1024'),
    'work_mem': dict(vartype='integer', unit='kB', context='user', setting='4096',
                     min_val='64', max_val='2147483647', boot_val='4096'),
    'checkpoint_timeout': dict(vartype='integer', unit='s', context='sighup', setting='300',
                               min_val='30', max_val='86400'),
    'statement_timeout': dict(vartype='integer', unit='ms', context='user', setting='0',
                              min_val='0', max_val='2147483647'),
    'log_rotation_age': dict(vartype='integer', unit='min', context='sighup', setting='1440',
                             min_val='0', max_val='35791394'),
    'max_connections': dict(vartype='integer', context='postmaster', setting='100',
                            min_val='1', max_val='262143'),
    'vacuum_cost_delay': dict(vartype='real', unit='ms', context='user', setting='0',
                              min_val='0', max_val='100'),
    'random_page_cost': dict(vartype='real', context='user', setting='4',
                             min_val='0', max_val='1.79769e+308'),
    'fsync': dict(vartype='bool', context='sighup', setting='on'),
    'log_connections': dict(vartype='bool', context='superuser-backend', setting='off'),
    'listen_addresses': dict(vartype='string', context='postmaster', setting='localhost'),
    'shared_preload_libraries': dict(vartype='string', context='postmaster', setting=''),
    'search_path': dict(vartype='string', context='user', setting='"$user", public'),
    'DateStyle': dict(vartype='string', context='user', setting='ISO, MDY'),
    'TimeZone': dict(vartype='string', context='user', setting='Etc/UTC'),
    'archive_command': dict(vartype='string', context='sighup', setting=''),
    'pg_stat_statements.max': dict(vartype='integer', context='postmaster', setting='5000',
                                   min_val='100', max_val='1073741823'),
    'block_size': dict(vartype='integer', context='internal', setting='8192'),
    'data_directory': dict(vartype='string', context='postmaster', setting='/data'),
}


def setting(name, **overrides):
    attrs = dict(name=name, source='configuration file', pending_restart=False,
                 in_auto_conf=False)
    attrs.update(CATALOG[name])
    attrs.setdefault('shown', attrs['setting'])
    attrs.setdefault('boot_val', attrs['setting'])
    attrs.update(overrides)
    return Setting(**attrs)


def plan(desired, files_readable=True, **current):
    """Plan with the catalog rows above; ``current`` overrides per setting name."""
    state = dict((name, setting(name, **current.get(name, {})) if name in CATALOG else None)
                 for name in desired)
    return plan_settings(desired, state, files_readable)


def rendered(p):
    return [render(s) for s in p.statements]


def value(name, text, **overrides):
    return canonical(setting(name, **overrides), text)


# ---- parsing like guc.c -----------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('on', True), ('ON', True), ('true', True), ('t', True), ('tr', True), ('yes', True),
    ('y', True), ('1', True), ('off', False), ('of', False), ('false', False), ('f', False),
    ('no', False), ('n', False), ('0', False), ('FaLsE', False),
    ('o', None), ('', None), ('2', None), ('truex', None), ('enable', None), (' on', None),
])
def test_parse_bool_like_postgresql(text, expected):
    assert parse_bool(text) == expected


@pytest.mark.parametrize('name, text, expected', [
    ('min_wal_size', '10GB', 10240),
    ('min_wal_size', '10240', 10240),
    ('min_wal_size', '10240MB', 10240),
    ('min_wal_size', '10 GB', 10240),
    ('min_wal_size', '0.5GB', 512),
    ('min_wal_size', '1TB', 1048576),
    ('min_wal_size', '1536kB', 2),            # 1.5 MB rounds to even
    ('max_slot_wal_keep_size', '-1', -1),
    ('max_slot_wal_keep_size', '10GB', 10240),
    ('shared_buffers', '1GB', 131072),
    ('shared_buffers', '128MB', 16384),
    ('shared_buffers', '16384', 16384),
    ('shared_buffers', '8kB', 1),
    ('shared_buffers', '100kB', 12),          # 12.5 blocks: rint() rounds half to even
    ('shared_buffers', '1.5GB', 196608),
    ('work_mem', '64MB', 65536),
    ('work_mem', '1.5MB', 1536),
    ('work_mem', '1048576B', 1024),
    ('work_mem', '0x10', 16),                 # strtol base 0: hex ...
    ('work_mem', '010', 8),                   # ... and octal
    ('work_mem', '1e3', 1000),
    ('work_mem', '+100', 100),
    ('checkpoint_timeout', '5min', 300),
    ('checkpoint_timeout', '300', 300),
    ('checkpoint_timeout', '300000ms', 300),
    ('checkpoint_timeout', '1h', 3600),
    ('checkpoint_timeout', '1d', 86400),
    ('checkpoint_timeout', '1.5min', 90),
    ('statement_timeout', '1.5s', 1500),
    ('statement_timeout', '2500us', 2),       # 2.5 ms: rint() rounds half to even
    ('statement_timeout', '3500us', 4),
    ('log_rotation_age', '1d', 1440),
    ('log_rotation_age', '90s', 2),           # 1.5 min -> rint -> 2
    ('max_connections', '200', 200),
])
def test_units_normalised_like_postgresql(name, text, expected):
    assert value(name, text) == expected


@pytest.mark.parametrize('name, text', [
    ('min_wal_size', '10 GiB'), ('min_wal_size', '10gb'), ('min_wal_size', 'ten'),
    ('min_wal_size', '10 G B'), ('min_wal_size', '10GBx'), ('min_wal_size', '10min'),
    ('checkpoint_timeout', '5MB'), ('max_connections', '10kB'), ('work_mem', '08'),
    ('work_mem', ''), ('work_mem', 'nan'), ('work_mem', '99999999999'), ('work_mem', '1e999'),
])
def test_invalid_numbers(name, text):
    with pytest.raises(InvalidValue):
        value(name, text)


def test_invalid_unit_message_lists_units():
    with pytest.raises(InvalidValue) as e:
        value('min_wal_size', '10 GiB')
    assert 'Valid units for this setting are "B", "kB", "MB", "GB", and "TB"' in str(e.value)
    with pytest.raises(InvalidValue) as e:
        value('checkpoint_timeout', '5MB')
    assert '"us", "ms", "s", "min", "h", and "d"' in str(e.value)


def test_convert_to_base_unit_rounds_to_next_smaller_unit():
    assert convert_to_base_unit(1.0, 'GB', 'MB') == 1024
    # 0.0001 GB = 0.1024 MB: rounded to whole MB (the unit after GB) first
    assert convert_to_base_unit(0.0001, 'GB', 'MB') == 0.0
    assert convert_to_base_unit(1.5, 'MB', 'MB') == 1.5
    assert convert_to_base_unit(1.0004, 'MB', 'MB') == 1.0  # 1024.4096 kB -> 1024 kB
    assert convert_to_base_unit(1.0, 'parsec', 'MB') is None
    assert convert_to_base_unit(1.0, 'MB', None) is None


def test_reals_compare_with_postgresql_precision():
    assert value('vacuum_cost_delay', '2ms') == value('vacuum_cost_delay', '2')
    assert value('vacuum_cost_delay', '0.002s') == '2'
    assert value('random_page_cost', '1.1') == value('random_page_cost', '1.10')
    assert value('random_page_cost', '1.1000001') == '1.1'   # %g: six significant digits
    with pytest.raises(InvalidValue):
        value('random_page_cost', '1.1x')


@pytest.mark.parametrize('text, expected', [
    ('logical', 'logical'), ('LOGICAL', 'logical'), ('Replica', 'replica'),
    ('hot_standby', 'replica'), ('archive', 'replica'),
])
def test_enum_case_insensitive_and_aliases(text, expected):
    assert value('wal_level', text) == expected


def test_enum_boolean_spellings_where_on_off_exist():
    assert value('synchronous_commit', 'true') == 'on'
    assert value('synchronous_commit', 'no') == 'off'
    with pytest.raises(InvalidValue) as e:
        value('wal_level', 'on')
    assert 'minimal, replica, logical' in str(e.value)


def test_lists_compare_element_by_element():
    assert value('listen_addresses', 'localhost, 10.0.0.1') == ('localhost', '10.0.0.1')
    assert value('listen_addresses', 'localhost,10.0.0.1') == ('localhost', '10.0.0.1')
    assert value('listen_addresses', '*') == ('*',)
    assert value('listen_addresses', '') == ()
    assert value('shared_preload_libraries', 'a, "B c"') == ('a', 'B c')
    assert value('search_path', '"$user", public') == ('$user', 'public')
    assert value('DateStyle', 'iso, mdy') == value('DateStyle', 'ISO, MDY')
    assert value('TimeZone', 'europe/amsterdam') == value('TimeZone', 'Europe/Amsterdam')
    assert value('archive_command', 'cp %p /a/%f') != value('archive_command', 'CP %p /a/%f')


@pytest.mark.parametrize('text', ['a,', 'a,,b', '"a', '"a"b', ','])
def test_malformed_lists(text):
    with pytest.raises(InvalidValue):
        split_list(text)


def test_split_list_quotes():
    assert split_list(' "a ""q"" b" , c ') == ['a "q" b', 'c']
    assert split_list('') == []


def test_postgresql_conf_style_quotes_are_removed():
    assert unquote_conf("'*'") == '*'
    assert unquote_conf("'it''s'") == "it's"
    assert unquote_conf("'a' 'b'") == "'a' 'b'"
    assert unquote_conf("'") == "'"
    assert unquote_conf('plain') == 'plain'


def test_desired_values_from_yaml_types():
    s = setting('fsync')
    assert desired_value(s, False).literals == ('off',)
    assert desired_value(s, 'yes').literals == ('on',)
    assert desired_value(setting('max_connections'), 200).literals == ('200',)
    assert desired_value(setting('wal_level'), 'LOGICAL').literals == ('logical',)
    assert desired_value(setting('listen_addresses'), "'*'").literals == ('*',)
    assert desired_value(setting('listen_addresses'), ['localhost', '10.0.0.1']).literals \
        == ('localhost, 10.0.0.1',)
    libs = desired_value(setting('shared_preload_libraries'), 'pg_stat_statements, "My Lib"')
    assert libs.literals == ('pg_stat_statements', 'My Lib')
    assert libs.text == 'pg_stat_statements, "My Lib"'
    assert desired_value(setting('work_mem'), None).reset


def test_empty_list_for_quoted_list_setting_is_refused():
    with pytest.raises(InvalidValue) as e:
        desired_value(setting('shared_preload_libraries'), [])
    assert 'use null' in str(e.value)
    assert desired_value(setting('listen_addresses'), '').literals == ('',)


def test_list_for_scalar_setting_is_refused():
    with pytest.raises(InvalidValue):
        desired_value(setting('work_mem'), ['1MB'])


# ---- planning ---------------------------------------------------------------------------------

def test_no_op_when_running_value_matches():
    p = plan({'min_wal_size': '80MB', 'fsync': True, 'wal_level': 'REPLICA',
              'listen_addresses': 'localhost', 'work_mem': '4MB'})
    assert p.statements == []
    assert not p.reload_needed


def test_no_op_when_configured_value_matches_another_spelling():
    p = plan({'max_slot_wal_keep_size': '10GB'},
             max_slot_wal_keep_size=dict(setting='10240', configured='10240MB',
                                         in_auto_conf=True))
    assert p.statements == []


def test_set_then_reload():
    p = plan({'min_wal_size': '1GB', 'fsync': 'off'})
    assert rendered(p) == ["ALTER SYSTEM SET \"min_wal_size\" = '1GB'",
                           "ALTER SYSTEM SET \"fsync\" = 'off'",
                           'SELECT pg_catalog.pg_reload_conf()']
    assert [s.autocommit for s in p.statements] == [True, True, False]


def test_pending_restart_is_not_changed_again_but_reported():
    pending = dict(setting='replica', configured='logical', in_auto_conf=True,
                   pending_restart=True)
    p = plan({'wal_level': 'logical'}, wal_level=pending)
    assert p.statements == []
    values, restart = p.predicted()
    assert restart == ['wal_level'] and values == {'wal_level': 'logical'}


def test_postmaster_setting_configured_but_not_reloaded_waits_for_restart():
    s = setting('shared_buffers', configured='1GB', in_auto_conf=True)
    assert waits_for_restart(s)
    assert not waits_for_restart(setting('shared_buffers', configured='128MB'))
    assert not waits_for_restart(setting('listen_addresses', configured='*'))  # strings: server


def test_running_value_matches_but_configured_differs():
    p = plan({'wal_level': 'replica'},
             wal_level=dict(setting='replica', configured='logical', in_auto_conf=True,
                            pending_restart=True))
    assert rendered(p)[0] == "ALTER SYSTEM SET \"wal_level\" = 'replica'"
    values, restart = p.predicted()
    assert restart == []


def test_check_mode_predicts_restart_for_postmaster_settings_only():
    p = plan({'wal_level': 'logical', 'min_wal_size': '1GB', 'shared_buffers': '128MB'})
    values, restart = p.predicted()
    assert restart == ['wal_level']
    assert values == {'wal_level': 'logical', 'min_wal_size': '1GB', 'shared_buffers': '16384'}


def test_reset_only_when_in_auto_conf():
    p = plan({'work_mem': None}, work_mem=dict(configured='64MB', in_auto_conf=True,
                                               fallback='8MB'))
    assert rendered(p) == ['ALTER SYSTEM RESET "work_mem"', 'SELECT pg_catalog.pg_reload_conf()']
    assert p.predicted()[0] == {'work_mem': '8MB'}
    assert plan({'work_mem': None}, work_mem=dict(configured='8MB')).statements == []
    assert plan({'work_mem': None}).statements == []


def test_reset_without_readable_files_always_runs():
    assert rendered(plan({'work_mem': None}, files_readable=False))[0] == \
        'ALTER SYSTEM RESET "work_mem"'


def test_reset_of_postmaster_setting_predicts_restart():
    p = plan({'shared_buffers': None},
             shared_buffers=dict(setting='16384', configured='1GB', in_auto_conf=True))
    assert p.predicted()[1] == ['shared_buffers']


def test_reload_only_when_configured_value_is_not_in_effect():
    p = plan({'min_wal_size': '1GB'}, min_wal_size=dict(setting='80', configured='1GB'))
    assert rendered(p) == ['SELECT pg_catalog.pg_reload_conf()']


def test_no_reload_for_strings_or_session_values():
    assert plan({'archive_command': 'x'},
                archive_command=dict(setting='', configured='x')).statements == []
    assert plan({'work_mem': '8MB'},
                work_mem=dict(setting='1024', source='database', configured='8MB')
                ).statements == []


def test_session_level_running_value_compares_against_default():
    # work_mem set per database: the server-wide value is the built-in default
    p = plan({'work_mem': '4MB'}, work_mem=dict(setting='65536', source='database'))
    assert p.statements == []
    p = plan({'work_mem': '64MB'}, work_mem=dict(setting='65536', source='user'))
    assert len(p.statements) == 2


def test_unknown_and_invalid_reported_together():
    with pytest.raises(SettingsError) as e:
        plan({'no_such_thing': 1, 'Nope': 2, 'work_mem': '1 parsec', 'wal_level': 'max',
              'block_size': 4096, 'data_directory': '/x', 'shared_buffers': '1kB'})
    problems = e.value.problems
    assert problems[0] == 'Unknown settings: Nope, no_such_thing.'
    text = str(e.value)
    for part in ('work_mem', 'wal_level', 'block_size cannot be changed',
                 'data_directory cannot be changed with ALTER SYSTEM',
                 "'1kB' is outside the valid range for setting shared_buffers"):
        assert part in text
    assert len(problems) == 6


def test_same_name_twice_is_refused():
    with pytest.raises(SettingsError) as e:
        plan_settings({'work_mem': '1MB', 'WORK_MEM': '2MB'},
                      {'work_mem': setting('work_mem'), 'WORK_MEM': setting('work_mem')})
    assert 'given twice' in str(e.value)


def test_strings_are_written_first():
    p = plan({'work_mem': '8MB', 'TimeZone': 'UTC', 'fsync': 'off'})
    assert [c.key for c in p.changes] == ['TimeZone', 'work_mem', 'fsync']


def test_list_values_sent_as_separate_literals():
    p = plan({'shared_preload_libraries': ['pg_stat_statements', "it's \"odd\""],
              'listen_addresses': "'*'", 'search_path': '"$user", Sales'})
    assert rendered(p)[:3] == [
        "ALTER SYSTEM SET \"shared_preload_libraries\" = 'pg_stat_statements', "
        "'it''s \"odd\"'",
        "ALTER SYSTEM SET \"listen_addresses\" = '*'",
        "ALTER SYSTEM SET \"search_path\" = '$user', 'Sales'",
    ]


def test_list_matches_what_alter_system_wrote():
    p = plan({'shared_preload_libraries': 'pg_stat_statements, My Lib'},
             shared_preload_libraries=dict(configured='pg_stat_statements, "My Lib"',
                                           in_auto_conf=True))
    assert p.statements == []


def test_custom_dotted_name_and_hostile_value():
    p = plan({'pg_stat_statements.max': 10000, 'archive_command': "x'; DROP TABLE t; --"})
    assert rendered(p)[:2] == [
        "ALTER SYSTEM SET \"archive_command\" = 'x''; DROP TABLE t; --'",
        "ALTER SYSTEM SET \"pg_stat_statements\".\"max\" = '10000'",
    ]


def test_restore_statements():
    p = plan({'work_mem': '8MB', 'min_wal_size': '1GB', 'shared_preload_libraries': 'x'},
             work_mem=dict(configured='64MB', in_auto_conf=True),
             min_wal_size=dict(configured='80MB'),
             shared_preload_libraries=dict(configured='a, "B c"', in_auto_conf=True))
    restore = dict((c.key, render(c.restore)) for c in p.changes)
    assert restore == {
        'work_mem': "ALTER SYSTEM SET \"work_mem\" = '64MB'",
        'min_wal_size': 'ALTER SYSTEM RESET "min_wal_size"',
        'shared_preload_libraries': "ALTER SYSTEM SET \"shared_preload_libraries\" = 'a', 'B c'",
    }
    assert all(c.restore.autocommit for c in p.changes)


def test_empty_settings_plan_nothing():
    p = plan_settings({}, {})
    assert p.statements == [] and p.predicted() == ({}, [])


class TestAtLeast(object):
    """Capacity settings given as lower bounds (pg_settings at_least)."""

    def _plan(self, configured, wanted):
        current = {'max_connections': setting('max_connections', setting=configured)}
        return plan_settings({'max_connections': wanted}, current, at_least=['max_connections'])

    def test_a_higher_value_is_kept_a_lower_one_raised(self):
        assert self._plan('200', 100).changes == []
        assert self._plan('100', 100).changes == []
        assert [c.key for c in self._plan('100', 200).changes] == ['max_connections']
        # without at_least the value is exact
        exact = plan_settings({'max_connections': 100},
                              {'max_connections': setting('max_connections', setting='200')})
        assert [c.key for c in exact.changes] == ['max_connections']

    def test_only_integers(self):
        current = {'wal_level': setting('wal_level')}
        with pytest.raises(SettingsError) as err:
            plan_settings({'wal_level': 'logical'}, current, at_least=['wal_level'])
        assert 'not an integer' in str(err.value)


def test_log_connections_of_postgresql_18_compares_aspects_and_boolean_spellings():
    pg18 = dict(vartype='string', setting='')
    on = value('log_connections', 'on', **pg18)
    assert on == frozenset(['receipt', 'authentication', 'authorization'])
    assert on == value('log_connections', 'yes', **pg18) \
        == value('log_connections', 'authorization, Receipt,authentication', **pg18)
    assert value('log_connections', 'off', **pg18) == value('log_connections', '', **pg18) \
        == frozenset()
    assert value('log_connections', 'all', **pg18) == on | frozenset(['setup_durations'])
    assert value('log_connections', 'receipt', **pg18) != on
    # before 18 it is a boolean
    assert value('log_connections', 'yes') is True
