# -*- coding: utf-8 -*-
"""Check mode of the roles changes nothing: playbooks/site.yml (sync_model, postgresql_server,
fdw_source, fdw_consumer, trigger_target, trigger_source, logical_publisher,
logical_subscriber) plus sync_monitoring, run with --check --diff against two local clusters,
fresh and converged with pending changes. A snapshot of everything the roles could change is
taken before and after and must be identical: every database's catalog (roles with their
password verifiers, publications, subscriptions, table sync states, slots, foreign servers,
user mappings with their options, functions with their bodies, triggers, relations, grants,
extensions, row counts), pg_settings with pending_restart, postgresql.auto.conf, pg_hba.conf
and the files the roles write (directories pointed at a temporary tree, and the
sync_monitoring units under /etc/systemd/system).

Not covered here: the systemd timers (fdw_consumer/trigger_source ``*_manage_timers``) and
the sync_monitoring timer need a running systemd; in check mode on a fresh host their units are
only reported, and the Molecule scenarios run the real thing (including a check-mode run with no
change). The restart itself goes through ``postgresql_server_restart_command`` (pg_ctl).
"""
import glob
import hashlib
import os
import shutil
import tempfile

import pytest
import yaml

from hostile import (SITE, failures, needs_host_python, prepare_site, run_site, site_inventory,
                     site_sets, start_cluster, task_results)
from pgcluster import wait_for

pytestmark = needs_host_python

UNIT = 'tablesync-exporter-check-%d' % os.getpid()
PASSWORDS = dict(tablesync_replication_password='Check-Repl-pw-1',
                 tablesync_fdw_password='Check-Fdw-pw-1',
                 tablesync_trigger_password='Check-Trg-pw-1')

CATALOG = r'''
SELECT json_build_object(
 'roles', (SELECT json_agg(json_build_object('name', rolname, 'attrs', ARRAY[rolsuper, rolinherit,
        rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls]::text,
        'limit', rolconnlimit, 'password', md5(coalesce(rolpassword, '')), 'until', rolvaliduntil)
        ORDER BY rolname) FROM pg_authid),
 'role_settings', (SELECT json_agg(json_build_object('db', setdatabase, 'role', setrole,
        'config', setconfig) ORDER BY setdatabase, setrole) FROM pg_db_role_setting),
 'members', (SELECT json_agg(ARRAY[roleid::regrole::text, member::regrole::text] ORDER BY 1)
        FROM pg_auth_members),
 'databases', (SELECT json_agg(json_build_object('name', datname, 'acl', datacl::text)
        ORDER BY datname) FROM pg_database),
 'subscriptions_global', (SELECT json_agg(json_build_object('name', subname, 'db', subdbid,
        'enabled', subenabled, 'conninfo', md5(subconninfo), 'slot', subslotname,
        'pubs', subpublications, 'sync', subsynccommit, 'binary', subbinary)
        ORDER BY subname) FROM pg_subscription),
 'slots', (SELECT json_agg(json_build_object('name', slot_name, 'plugin', plugin,
        'type', slot_type, 'db', database, 'temporary', temporary) ORDER BY slot_name)
        FROM pg_replication_slots)
)
'''

PER_DATABASE = r'''
SELECT json_build_object(
 'schemas', (SELECT json_agg(json_build_object('name', nspname, 'owner', nspowner::regrole::text,
        'acl', nspacl::text) ORDER BY nspname) FROM pg_namespace
        WHERE nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'),
 'relations', (SELECT json_agg(json_build_object('name', c.oid::regclass::text, 'kind', relkind,
        'owner', relowner::regrole::text, 'acl', relacl::text, 'ident', relreplident,
        'options', reloptions, 'ftoptions', ft.ftoptions, 'comment', obj_description(c.oid))
        ORDER BY c.oid::regclass::text) FROM pg_class c
        LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
        WHERE c.relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
          AND c.relnamespace::regnamespace::text NOT LIKE 'pg_toast%'),
 'columns', (SELECT json_agg(json_build_object('rel', attrelid::regclass::text, 'name', attname,
        'type', format_type(atttypid, atttypmod), 'notnull', attnotnull)
        ORDER BY attrelid::regclass::text, attnum) FROM pg_attribute a JOIN pg_class c
        ON c.oid = a.attrelid WHERE attnum > 0 AND NOT attisdropped
        AND c.relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
        AND c.relnamespace::regnamespace::text NOT LIKE 'pg_toast%'),
 'functions', (SELECT json_agg(json_build_object('name', p.oid::regprocedure::text,
        'src', md5(prosrc), 'secdef', prosecdef, 'config', proconfig, 'acl', proacl::text,
        'comment', obj_description(p.oid, 'pg_proc')) ORDER BY p.oid::regprocedure::text)
        FROM pg_proc p WHERE pronamespace::regnamespace::text
        NOT IN ('pg_catalog', 'information_schema')),
 'triggers', (SELECT json_agg(json_build_object('name', tgname, 'rel', tgrelid::regclass::text,
        'enabled', tgenabled, 'def', pg_get_triggerdef(t.oid)) ORDER BY 2, 1)
        FROM pg_trigger t WHERE NOT tgisinternal),
 'publications', (SELECT json_agg(json_build_object('name', pubname, 'all', puballtables,
        'ops', ARRAY[pubinsert, pubupdate, pubdelete, pubtruncate], 'root', pubviaroot,
        'tables', (SELECT json_agg(json_build_object('rel', prrelid::regclass::text,
                   'qual', pg_get_expr(prqual, prrelid), 'attrs', prattrs::text) ORDER BY 1)
                   FROM pg_publication_rel r WHERE r.prpubid = p.oid),
        'comment', obj_description(p.oid, 'pg_publication')) ORDER BY pubname)
        FROM pg_publication p),
 'subscription_tables', (SELECT json_agg(json_build_object('sub', s.subname,
        'rel', r.srrelid::regclass::text, 'state', r.srsubstate) ORDER BY 1)
        FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid),
 'servers', (SELECT json_agg(json_build_object('name', srvname, 'fdw', srvfdw,
        'options', srvoptions, 'owner', srvowner::regrole::text, 'acl', srvacl::text,
        'comment', obj_description(oid, 'pg_foreign_server')) ORDER BY srvname)
        FROM pg_foreign_server),
 'mappings', (SELECT json_agg(json_build_object('server', srvname, 'user', usename,
        'options', umoptions) ORDER BY srvname, usename) FROM pg_user_mappings),
 'extensions', (SELECT json_agg(json_build_object('name', extname, 'schema',
        extnamespace::regnamespace::text, 'version', extversion) ORDER BY extname)
        FROM pg_extension),
 'default_acl', (SELECT json_agg(defaclacl::text ORDER BY 1) FROM pg_default_acl)
)
'''

ROW_COUNTS = r'''
SELECT c.oid::regclass::text FROM pg_class c
 WHERE c.relkind IN ('r', 'p', 'm') AND c.relnamespace::regnamespace::text
       NOT IN ('pg_catalog', 'information_schema') AND c.relnamespace::regnamespace::text
       NOT LIKE 'pg_toast%' ORDER BY 1
'''


def settled(cluster):
    """Subscriptions have finished their table syncs (states move s -> r on their own)."""
    for db in databases(cluster):
        wait_for(lambda db=db: cluster.query(
            "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'", dbname=db)
            == [(0,)], timeout=120, what='table syncs of %s/%s done' % (cluster.name, db))


def databases(cluster):
    return [r[0] for r in cluster.query(
        "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1' "
        'ORDER BY 1')]


def read_file(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def files_under(*roots):
    found = {}
    for root in roots:
        for path in sorted(glob.glob(root)):
            if os.path.isdir(path):
                for base, dirs, names in os.walk(path):
                    dirs.sort()
                    found[base + '/'] = oct(os.stat(base).st_mode)
                    for name in sorted(names):
                        full = os.path.join(base, name)
                        found[full] = read_file(full)
            else:
                found[path] = read_file(path)
    return found


def snapshot(cluster, tree):
    settled(cluster)
    snap = {'global': cluster.query(CATALOG)[0][0]}
    for db in databases(cluster):
        snap[db] = cluster.query(PER_DATABASE, dbname=db)[0][0]
        snap[db + ' rows'] = dict((rel, cluster.query('SELECT count(*) FROM %s' % rel,
                                                      dbname=db)[0][0])
                                  for (rel,) in cluster.query(ROW_COUNTS, dbname=db))
    snap['settings'] = cluster.query(
        'SELECT name, setting, source, sourcefile, pending_restart FROM pg_settings ORDER BY 1')
    snap['files'] = files_under(
        os.path.join(cluster.datadir, 'postgresql.auto.conf'),
        os.path.join(cluster.datadir, 'pg_hba.conf*'),
        os.path.join(cluster.datadir, 'postgresql.conf'),
        tree, '/etc/systemd/system/%s.*' % UNIT)
    return snap


def assert_same(before, after):
    assert before.keys() == after.keys()
    for key in before:
        assert before[key] == after[key], 'check mode changed %s' % key


@pytest.fixture(scope='module')
def site(pg_base):
    src = start_cluster('check_src', pg_base)
    dst = start_cluster('check_dst', pg_base)
    tree = tempfile.mkdtemp(prefix='tablesync-check-files-')
    os.chmod(tree, 0o755)
    prepare_site(src, dst)
    yield src, dst, tree
    for path in glob.glob('/etc/systemd/system/%s.*' % UNIT):
        os.unlink(path)
    shutil.rmtree(tree, ignore_errors=True)
    dst.stop('immediate')
    src.stop('immediate')


def inventory(site, sets=None, **extra):
    src, dst, tree = site
    variables = dict(PASSWORDS)
    variables.update({
        'fdw_consumer_sql_dir': os.path.join(tree, 'fdw-sql'),
        'fdw_consumer_systemd_dir': os.path.join(tree, 'units'),
        'trigger_source_systemd_dir': os.path.join(tree, 'units'),
        'sync_monitoring_install_dir': os.path.join(tree, 'exporter'),
        'sync_monitoring_config_dir': os.path.join(tree, 'exporter-conf'),
        'sync_monitoring_textfile_dir': os.path.join(tree, 'textfiles'),
        'sync_monitoring_unit_name': UNIT,
    })
    variables.update(extra)
    return site_inventory(src, dst, sets, **variables)


def site_with_monitoring(tmp):
    """site.yml followed by the sync_monitoring role (not part of site.yml)."""
    path = os.path.join(tmp, 'check-site.yml')
    with open(path, 'w') as f:
        yaml.safe_dump([{'name': 'site', 'ansible.builtin.import_playbook': SITE},
                        {'name': 'Monitoring', 'hosts': 'all', 'gather_facts': False,
                         'roles': [{'role': 'tablesync.postgresql.sync_monitoring'}]}], f)
    return path


def changed_tasks(data):
    return sorted(set('%s: %s' % (host, task['task']['name'])
                      for play in data['plays'] for task in play['tasks']
                      for host, result in task['hosts'].items() if result.get('changed')))


def check_run(site, want_data=False, **inv):
    src, dst, tree = site
    before = (snapshot(src, tree), snapshot(dst, tree))
    with tempfile.TemporaryDirectory() as tmp:
        rc, out, err, data = run_site(inventory(site, **inv), site_with_monitoring(tmp),
                                      check=True, diff=True)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    after = (snapshot(src, tree), snapshot(dst, tree))
    assert_same(before[0], after[0])
    assert_same(before[1], after[1])
    return (changed_tasks(data), data) if want_data else changed_tasks(data)


def test_check_mode_fresh_then_converged_with_pending_changes(site):
    src, dst, tree = site
    # fresh clusters: check mode reports the whole rollout and changes nothing
    changed, data = check_run(site, want_data=True)
    assert any(t.startswith('src:') for t in changed) and any(t.startswith('dst:')
                                                              for t in changed), changed
    # the publisher has no replication role yet: the probe (the password a no_log module
    # option) says why the target tables are not checked
    explained = [item['msg'] for _play, name, host, result in task_results(data)
                 if name.endswith('Check mode - explain the target tables not checked')
                 for item in result.get('results', []) if item.get('msg')]
    assert len(explained) == 1 and 'does not accept tablesync_replicator yet' in explained[0] \
        and 'tablesync_replicator' in explained[0], explained
    assert dst.query("SELECT count(*) FROM pg_database WHERE datname = 'shop_rep'") == [(0,)]
    assert not os.path.exists(os.path.join(tree, 'exporter'))

    # converge for real (without monitoring, which needs systemd), then a second run is quiet
    rc, out, err, data = run_site(inventory(site))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert dst.query('SELECT count(*) FROM pg_subscription') == [(1,)]

    # pending changes of every kind: a table joins the logical set, new fdw and trigger
    # passwords, a reloadable and a restart-only setting, another set mode
    changed = check_run(
        site, sets=site_sets(logical_tables=('sales.orders', 'sales.customers')),
        tablesync_fdw_password='Check-Fdw-pw-2', tablesync_trigger_password='Check-Trg-pw-2',
        postgresql_server_settings={'work_mem': '7MB', 'max_wal_senders': 31},
        trigger_source_mode='immediate')
    assert any('dst' in t for t in changed) and any('src' in t for t in changed), changed
    assert src.query("SELECT count(*) FROM pg_settings WHERE pending_restart") == [(0,)]
