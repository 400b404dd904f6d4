# -*- coding: utf-8 -*-
"""logical_subscriber through playbooks/site.yml: the target tables of a new subscription get
their secondary indexes only after the initial copy, a run that stopped before the index builds
is completed by the next run, and logical_subscriber_defer_indexes=false creates them up front.
"""
import pytest

from hostile import failures, needs_host_python, run_logical_site, site_clusters, task_results

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Idx-Repl-pw-1',
                tablesync_fdw_password='Idx-Fdw-pw-1', tablesync_trigger_password='Idx-Trg-pw-1')
INDEXES = ("SELECT array_agg(c.relname::text || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END"
           " ORDER BY c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
           " WHERE i.indrelid = 'sales.orders'::regclass")
SECONDARY = ['orders_note_idx', 'orders_recent_idx']


@pytest.fixture(scope='module')
def site(pg_base):
    for src, dst in site_clusters('idx', pg_base):
        src.execute("CREATE INDEX orders_note_idx ON sales.orders (lower(note));"
                    "CREATE INDEX orders_recent_idx ON sales.orders (id DESC) WHERE id > 2", dbname='shop')
        yield src, dst


def run(site, **variables):
    rc, out, err, data = run_logical_site(site, dict(PASSWORD, **variables))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    return dict(((name, host), result) for _play, name, host, result in task_results(data))


def index_results(results, task):
    found = [r for (name, host), r in results.items()
             if host == 'dst' and name == 'tablesync.postgresql.logical_subscriber : ' + task]
    assert found, sorted(results)
    return [item for item in found[0].get('results', []) if not item.get('skipped')]


def test_indexes_built_after_the_initial_copy_and_after_an_interrupted_run(site):
    src, dst = site
    results = run(site)
    created = index_results(results, 'Create the missing target tables from the source\'s definitions')
    assert [r['indexes']['deferred'] for r in created] == [{'sales.orders': SECONDARY}]
    built = index_results(results, 'Build the secondary indexes deferred past the initial copy')
    assert [r['indexes']['built'] for r in built] == [{'sales.orders': SECONDARY}]
    assert dst.query(INDEXES, dbname='shop_rep') == [(sorted(['orders_pkey'] + SECONDARY),)]
    assert dst.query('SELECT count(*) FROM sales.orders', dbname='shop_rep') == [(5,)]

    # a run that stopped after the copy, before (or in the middle of) the index builds
    dst.execute('DROP INDEX sales.orders_recent_idx', dbname='shop_rep')
    results = run(site)
    created = index_results(results, 'Create the missing target tables from the source\'s definitions')
    # the table is synchronised: the first step already builds what is missing
    assert [r['indexes']['built'] for r in created] == [{'sales.orders': ['orders_recent_idx']}]
    assert dst.query(INDEXES, dbname='shop_rep') == [(sorted(['orders_pkey'] + SECONDARY),)]

    # converged: the first step deferred nothing, so the second makes no call at all
    results = run(site)
    created = index_results(results, 'Create the missing target tables from the source\'s definitions')
    assert [(r['changed'], r['indexes']['deferred']) for r in created] == [(False, {})]
    assert index_results(results, 'Build the secondary indexes deferred past the initial copy') == []


def test_defer_off_and_indexes_off(site):
    src, dst = site
    # indexes off: an existing index stays, nothing is built or deferred
    dst.execute('DROP INDEX sales.orders_note_idx', dbname='shop_rep')
    results = run(site, logical_subscriber_indexes=False)
    created = index_results(results, 'Create the missing target tables from the source\'s definitions')
    assert [r['indexes'] for r in created] == [{'built': {}, 'deferred': {}, 'skipped': []}]
    assert index_results(results, 'Build the secondary indexes deferred past the initial copy') == []
    assert dst.query(INDEXES, dbname='shop_rep') == [(['orders_pkey', 'orders_recent_idx'],)]
    # defer off: built by the first step
    results = run(site, logical_subscriber_defer_indexes=False)
    created = index_results(results, 'Create the missing target tables from the source\'s definitions')
    assert [r['indexes']['built'] for r in created] == [{'sales.orders': ['orders_note_idx']}]
    assert index_results(results, 'Build the secondary indexes deferred past the initial copy') == []
