# -*- coding: utf-8 -*-
"""What a re-run of site.yml leaves alone because the postgresql_server role's discovery (one
remote call at the start of the run) already read it, and proof that this never hides a
difference:

- pg_hba.conf: roles/common (hba_block) does not write a block that holds exactly the wanted
  entries; a block edited by hand, a line added inside a block and a block removed are each
  written back on the next run;
- settings: pg_settings is not called when its own plan on the discovery's read changes
  nothing; a setting changed by hand is set back, and one waiting for a restart still gets
  its restart;
- publications: the second pg_publication call of a set is skipped when the first (the
  filter-changes step, with the same options) reported the publication converged; a changed
  row filter still goes through both steps (tests/integration/test_pg_subscription.py and the
  Molecule scenario logical_change).
"""

import pytest

from hostile import (failures, needs_host_python, run_site, site_clusters, site_inventory,
                     site_sets)

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Hba-Repl-pw-1',
                tablesync_fdw_password='Hba-Fdw-pw-1', tablesync_trigger_password='Hba-Trg-pw-1')
TASK = 'tablesync.postgresql.common : Manage the block in pg_hba.conf'
SETTINGS_TASK = 'tablesync.postgresql.postgresql_server : Apply the settings with ALTER SYSTEM'
PUBLICATIONS_TASK = 'tablesync.postgresql.logical_publisher : Publications, one per sync set'
GATE = 'The sets of this host and their pg_hba.conf block'
MARK = 'tablesync.postgresql: %s (managed by Ansible, do not edit)'
# the source admits the subscribers and the fdw consumer; the target the trigger source
BLOCKS = {'src': ('replication access', 'fdw access'), 'dst': ('trigger sync access',)}


# a second logical set from another source database: two lines in the replication block
SETS = site_sets() + [
    {'name': 'refunds', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop2'},
     'targets': [{'host': 'dst', 'database': 'shop2_rep'}], 'tables': ['sales.refunds']}]


@pytest.fixture(scope='module')
def site(pg_base):
    for src, dst in site_clusters('hbr', pg_base):
        src.execute('CREATE DATABASE shop2')
        src.execute('CREATE SCHEMA sales; CREATE TABLE sales.refunds (id int PRIMARY KEY, amount numeric);'
                    'INSERT INTO sales.refunds VALUES (1, 2.5)', dbname='shop2')
        yield src, dst


def hba_path(cluster):
    return cluster.query('SHOW hba_file')[0][0]


def read(cluster):
    with open(hba_path(cluster)) as f:
        return f.read()


def write(cluster, text):
    with open(hba_path(cluster), 'w') as f:
        f.write(text)


def block_results(data, name=TASK):
    """{host: [result of each task named ``name``]} of a json-callback run."""
    out = {}
    for play in (data or {}).get('plays', []):
        for task in play.get('tasks', []):
            if task['task']['name'] != name:
                continue
            for host, result in task['hosts'].items():
                out.setdefault(host, []).append(result)
    return out


def converge(site):
    src, dst = site
    rc, out, err, data = run_site(site_inventory(src, dst, SETS, **PASSWORD))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    return data


def block_lines(text, title):
    lines = text.splitlines()
    first = lines.index('# BEGIN ' + MARK % title)
    last = lines.index('# END ' + MARK % title)
    return first, last


def test_first_run_writes_every_block(site):
    converge(site)
    for name, cluster in zip(('src', 'dst'), site):
        text = read(cluster)
        for title in BLOCKS[name]:
            first, last = block_lines(text, title)
            assert last > first + 1, (title, text)
    # the replication block has a line per source database, in one block
    first, last = block_lines(read(site[0]), 'replication access')
    assert last == first + 3, read(site[0])


def test_rerun_leaves_blocks_as_wanted_alone(site):
    before = [read(cluster) for cluster in site]
    data = converge(site)
    results = block_results(data)
    # every block task on every host was skipped: no call reached the host
    assert results, 'no hba block task ran'
    for host, found in results.items():
        assert all(r.get('skipped') for r in found), (host, found)
    assert [read(cluster) for cluster in site] == before
    settings = block_results(data, SETTINGS_TASK)
    assert sorted(settings) == ['dst', 'src']
    for host, found in settings.items():
        assert all(r.get('skipped') for r in found), (host, found)
    # the filter-changes step found both publications as wanted: no second call for either
    publications = block_results(data, PUBLICATIONS_TASK)['src'][0]['results']
    assert sorted(r['item']['name'] for r in publications) == ['orders', 'refunds']
    assert all(r.get('skipped') for r in publications), publications
    # a host with no set of the role and no block of it (as the discovery read pg_hba.conf)
    # skips the role's body in one include; the host with the sets runs it
    for role, idle, busy in (('fdw_source', 'dst', 'src'), ('trigger_target', 'src', 'dst')):
        gate = block_results(data, 'tablesync.postgresql.%s : %s' % (role, GATE))
        assert gate[idle][0].get('skipped') and not gate[busy][0].get('skipped'), (role, gate)


def test_a_setting_changed_by_hand_is_set_back(site):
    src, _dst = site
    src.execute('ALTER SYSTEM SET wal_level = replica')  # no restart: logical still runs
    data = converge(site)
    found = block_results(data, SETTINGS_TASK)['src']
    assert any(r.get('changed') for r in found), found
    assert not any(r.get('restart_required') for r in found), found
    assert src.query("SELECT setting, pending_restart FROM pg_settings WHERE name = 'wal_level'") \
        == [('logical', False)]
    assert not any(r.get('changed') for r in block_results(converge(site), SETTINGS_TASK)['src'])


def test_a_setting_waiting_for_a_restart_gets_it(site):
    src, _dst = site
    running = int(src.query('SHOW max_wal_senders')[0][0])
    # higher than the sets need (a lower bound: kept), written without the restart it needs
    src.execute('ALTER SYSTEM SET max_wal_senders = %d' % (running + 7))
    src.execute('SELECT pg_reload_conf()')
    data = converge(site)
    found = block_results(data, SETTINGS_TASK)['src']
    assert not any(r.get('skipped') for r in found), found
    assert any(r.get('restart_required') for r in found), found
    assert src.query("SELECT setting::int, pending_restart FROM pg_settings "
                     "WHERE name = 'max_wal_senders'") == [(running + 7, False)]


def wanted_block(text):
    first, last = block_lines(text, 'replication access')
    return text.splitlines()[first:last + 1]


@pytest.mark.parametrize('damage', ['edited', 'line_added', 'removed'])
def test_a_block_changed_by_hand_is_written_back(site, damage):
    src, _dst = site
    wanted = read(src)
    lines = wanted.splitlines()
    first, last = block_lines(wanted, 'replication access')
    if damage == 'edited':
        lines[first + 1] = lines[first + 1].replace('scram-sha-256', 'trust')
    elif damage == 'line_added':
        lines.insert(last, 'host all all 0.0.0.0/0 trust')
    else:
        del lines[first:last + 1]
    write(src, '\n'.join(lines) + '\n')
    assert read(src) != wanted

    data = converge(site)
    found = block_results(data)['src']
    assert any(r.get('changed') for r in found), found
    assert wanted_block(read(src)) == wanted_block(wanted)
    if damage != 'removed':  # a removed block comes back at the top of the file
        assert read(src) == wanted
    assert 'trust' not in '\n'.join(wanted_block(read(src)))
    assert src.query('SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL') == [(0,)]
    write(src, wanted)
