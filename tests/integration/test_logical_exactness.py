"""The logical method keeps the target equal to the source for the same seeded workload as the
trigger method (tests/integration/exactness.py), with both initial copies (issue 12 item 6)."""
import time

import pytest
from psycopg2 import sql

from exactness import HARD_TYPES_DDL, TABLES, assert_equal, run_workload, seed_from_env
from test_pg_subscription import SyncEnv, assert_ok

# Keyless tables replicate with REPLICA IDENTITY FULL, whose row match uses each type's equality:
# two rows equal by value but not by text (-0 and 0, 1.0 and 1.00) are the same row to it, so
# PostgreSQL's own apply may update or delete the other one of them. The workload keeps such
# values out of the keyless table here (the trigger method compares text forms and is tested
# with them, see test_trigger_exactness.py).
LOGICAL_TABLES = dict(TABLES)


def _wait_equal(env, seed, timeout=90):
    deadline = time.time() + timeout
    while True:
        try:
            assert_equal(env.pub, env.sub, None, seed, tables=LOGICAL_TABLES, dbs=(env.pubdb, env.subdb))
            return
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(1)


@pytest.mark.parametrize('initial_copy', ['snapshot', 'tablesync'])
def test_randomized_workload_arrives_exactly(publisher, subscriber, initial_copy):
    seed = seed_from_env()
    print('TABLESYNC_SEED=%d (logical, initial_copy %s)' % (seed, initial_copy))
    env = SyncEnv(publisher, subscriber)
    env.pub_sql(HARD_TYPES_DDL)
    env.sub_sql(HARD_TYPES_DDL)
    env.pub_sql('ALTER TABLE public.bag REPLICA IDENTITY FULL')
    run_workload(lambda: publisher.connect(env.pubdb), seed + 1, 20, keyless_exact_values=True)
    env.create_publication(*[sql.SQL(t) for t in sorted(TABLES)])
    result = env.run(initial_copy=initial_copy, wait_for_sync=True, wait_timeout=120)
    assert_ok(result, changed=True)
    _wait_equal(env, seed + 1)
    run_workload(lambda: publisher.connect(env.pubdb), seed, 200, keyless_exact_values=True)
    _wait_equal(env, seed)
