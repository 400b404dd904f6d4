"""The fdw method keeps the same seeded workload exact (issue 12 item 6): the foreign tables
read the source's rows, and the local copies (pg_foreign_table_copies) hold them after a refresh,
whatever settings the writing sessions had. Compared independently of pg_table_compare."""
from exactness import HARD_TYPES_DDL, TABLES, assert_equal, run_workload, seed_from_env
from runner import run_tasks
from test_pg_fdw import FdwEnv, ok

# the consumer needs the column types the foreign tables use (not the tables)
TYPES_DDL = HARD_TYPES_DDL[:HARD_TYPES_DDL.index('CREATE TABLE')]
NAMES = [t.split('.')[1] for t in sorted(TABLES)]


def copies_task(env):
    return env.task('pg_foreign_table_copies', refresh=True,
                    copies=[dict(name='local.%s' % n, source='shop.%s' % n) for n in NAMES])


def test_randomized_workload_reads_and_copies_exactly(publisher, subscriber):
    seed = seed_from_env()
    print('TABLESYNC_SEED=%d (fdw)' % seed)
    env = FdwEnv(publisher, subscriber)
    env.src_sql(HARD_TYPES_DDL)
    env.src_sql('GRANT SELECT ON public.hard, public.bag, public.part, public.part_eu, '
                'public.part_us TO %s' % env.remote_user)
    env.dst_sql(TYPES_DDL)
    run_workload(lambda: publisher.connect(env.srcdb), seed + 1, 30)
    run = run_tasks(env.setup_tasks(remote_schema='public', tables=NAMES) + [copies_task(env)])
    assert run.rc == 0, run.output
    for result in run.results:
        ok(result)
    local = dict((t, 'local.%s' % t.split('.')[1]) for t in TABLES)
    remote = dict((t, 'shop.%s' % t.split('.')[1]) for t in TABLES)

    def check(s):
        for table in sorted(TABLES):
            for through in (remote, local):
                assert_equal(publisher, subscriber, None, s, tables=[table], dbs=(env.srcdb, env.dstdb),
                             target_tables={table: through[table]})
    check(seed + 1)
    run_workload(lambda: publisher.connect(env.srcdb), seed, 200)
    run = run_tasks([copies_task(env)])
    assert run.rc == 0, run.output
    check(seed)
