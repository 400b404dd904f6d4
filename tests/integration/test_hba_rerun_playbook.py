# -*- coding: utf-8 -*-
"""pg_hba.conf blocks on a re-run of site.yml: the postgresql_server role reads what each
marked block holds at the start of the run, and roles/common (hba_block) leaves a block alone
when it already holds exactly the wanted entries (no remote call). Proved here that this never
hides a difference: a block edited by hand, a line added inside a block and a block removed
are each written back on the next run.
"""

import pytest

from hostile import failures, needs_host_python, run_site, site_clusters, site_inventory

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Hba-Repl-pw-1',
                tablesync_fdw_password='Hba-Fdw-pw-1', tablesync_trigger_password='Hba-Trg-pw-1')
TASK = 'tablesync.postgresql.common : Manage the block in pg_hba.conf'
MARK = 'tablesync.postgresql: %s (managed by Ansible, do not edit)'
# the source admits the subscribers and the fdw consumer; the target the trigger source
BLOCKS = {'src': ('replication access', 'fdw access'), 'dst': ('trigger sync access',)}


@pytest.fixture(scope='module')
def site(pg_base):
    for pair in site_clusters('hbr', pg_base):
        yield pair


def hba_path(cluster):
    return cluster.query('SHOW hba_file')[0][0]


def read(cluster):
    with open(hba_path(cluster)) as f:
        return f.read()


def write(cluster, text):
    with open(hba_path(cluster), 'w') as f:
        f.write(text)


def block_results(data):
    """{host: [result of each hba block task]} of a json-callback run."""
    out = {}
    for play in (data or {}).get('plays', []):
        for task in play.get('tasks', []):
            if task['task']['name'] != TASK:
                continue
            for host, result in task['hosts'].items():
                out.setdefault(host, []).append(result)
    return out


def converge(site):
    src, dst = site
    rc, out, err, data = run_site(site_inventory(src, dst, **PASSWORD))
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


def test_rerun_leaves_blocks_as_wanted_alone(site):
    before = [read(cluster) for cluster in site]
    data = converge(site)
    results = block_results(data)
    # every block task on every host was skipped: no call reached the host
    assert results, 'no hba block task ran'
    for host, found in results.items():
        assert all(r.get('skipped') for r in found), (host, found)
    assert [read(cluster) for cluster in site] == before


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
