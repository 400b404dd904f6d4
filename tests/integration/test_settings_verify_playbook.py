# -*- coding: utf-8 -*-
"""postgresql_server_manage_settings=false (another tool owns the configuration: Patroni, a
managed service's parameters): site.yml verifies the settings instead of setting them, fails
naming each parameter, its value now and the value it needs, and changes nothing on that host,
neither postgresql.auto.conf nor pg_hba.conf; once the settings are right, the same run passes.
"""

import pytest

from hostile import failures, needs_host_python, run_logical_site, server_files, site_clusters

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Vfy-Repl-pw-1',
                tablesync_fdw_password='Vfy-Fdw-pw-1', tablesync_trigger_password='Vfy-Trg-pw-1')


@pytest.fixture(scope='module')
def site(pg_base):
    for src, dst in site_clusters('vfy', pg_base):
        # the source as another tool configured it: no logical decoding
        src.execute('ALTER SYSTEM SET wal_level = replica')
        src.restart()
        yield src, dst


def test_verify_fails_naming_the_settings_and_changes_nothing_then_passes(site):
    src, dst = site
    before = server_files(src)
    rc, out, err, data = run_logical_site(site, dict(PASSWORD, postgresql_server_manage_settings=False))
    assert rc != 0
    found = failures(data)
    assert 'postgresql_server_manage_settings is false' in found, found
    assert 'wal_level = logical (now replica)' in found, found
    assert server_files(src) == before
    assert src.query('SHOW wal_level') == [('replica',)]

    # the settings made right (here by the collection itself), the verification passes
    rc, out, err, data = run_logical_site(site, PASSWORD)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert src.query('SHOW wal_level') == [('logical',)]
    rc, out, err, data = run_logical_site(site, dict(PASSWORD, postgresql_server_manage_settings=False))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
