# -*- coding: utf-8 -*-
"""pg_table_compare without a database: options, table resolution, SQL, and the drill-down
engine against in-memory sides that answer its requests like the SQL would."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bisect
import random

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement, render
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.compare_sql import (
    CompareError, bounds_query, bucket_expr, compare_query, key_literal, row_hash,
    session_statements)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.table_compare import (
    Comparison, Range, ResolvedTable, SideTable, Task, Tuning, parse_table_specs, resolve_table,
    retry_tasks, table_result, top_level_task)

HOSTILE_SCHEMA = 'Wé"ird; Schema'
HOSTILE_TABLE = 'Order Items; DROP TABLE x --'
LONG = 'é' * 31 + 'x'  # 63 bytes


def text(composable):
    return render(Statement(composable))


# ---- options ---------------------------------------------------------------------------------

def test_specs_strings_and_dicts():
    specs = parse_table_specs([
        'sales.orders', 'plain',
        {'name': 'Sales.Order Items', 'columns': ['a', 'B c'], 'where': " region = 'EU' ",
         'key': ['id', 'Part'], 'replica_identity': 'full'},
        {'name': 'x.y', 'where': 'a > 1', 'target_where': ''}])
    assert [(s.schema, s.name) for s in specs] == [
        ('sales', 'orders'), ('public', 'plain'), ('Sales', 'Order Items'), ('x', 'y')]
    assert specs[2].columns == ['a', 'B c'] and specs[2].key_columns == ['id', 'Part']
    assert specs[2].where == "region = 'EU'" and specs[2].target_where is None
    assert specs[3].target_where == '' and specs[0].where is None
    assert specs[2].shown == 'Sales.Order Items'


def test_specs_hostile_and_long_names():
    quoted = '"%s"."%s"' % (HOSTILE_SCHEMA.replace('"', '""'), HOSTILE_TABLE)
    specs = parse_table_specs([quoted, '%s.%s' % (LONG, LONG)])
    assert (specs[0].schema, specs[0].name) == (HOSTILE_SCHEMA, HOSTILE_TABLE)
    assert (specs[1].schema, specs[1].name) == (LONG, LONG)


@pytest.mark.parametrize('items, fragment', [
    ([], 'non-empty list'),
    ([{'name': 'a.b', 'colums': ['x']}], 'unknown key(s) colums'),
    ([{'columns': ['x']}], 'has no name'),
    ([{'name': 'a.b', 'columns': []}], 'non-empty list'),
    ([{'name': 'a.b', 'key': ['x', 'x']}], 'more than once'),
    ([{'name': 'a.b', 'columns': ['x' * 64]}], 'longer than 63 bytes'),
    ([{'name': 'a.b', 'where': 'true); DROP TABLE x; --'}], 'closes a parenthesis'),
    ([{'name': 'a.b', 'where': 'a = 1; DELETE FROM b'}], 'contains ";"'),
    ([{'name': 'a.b', 'where': 42}], 'must be a string'),
    (['a.b.c'], 'not a valid schema.table'),
    ([42], 'a table is a "schema.table" string'),
    (['a.b', 'a.b'], 'listed more than once'),
    ([('é' * 32) + '.t'], 'longer than 63 bytes'),
])
def test_specs_errors(items, fragment):
    with pytest.raises(CompareError) as e:
        parse_table_specs(items)
    assert fragment in str(e.value)


def test_where_semicolon_inside_literal_is_fine():
    (spec,) = parse_table_specs([{'name': 'a.b', 'where': "note <> 'a;b' AND (x > 1)"}])
    assert spec.where == "note <> 'a;b' AND (x > 1)"


# ---- resolution against the catalogs ---------------------------------------------------------

def col(name, type_='integer', not_null=False, collation=None):
    return {'name': name, 'type': type_, 'not_null': not_null, 'collation': collation}


def info(columns, pk=None, ri=None, kind='r', reltuples=1000.0, relpages=10, pages=10):
    return {'kind': kind, 'columns': columns, 'pk': pk, 'ri': ri, 'reltuples': reltuples,
            'relpages': relpages, 'pages': pages}


ORDERS = info([col('id', 'bigint', True), col('total', 'numeric(10,2)'), col('note', 'text', collation='d/c')],
              pk=['id'])


def spec(name='sales.orders', **kw):
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import TableRef
    if 'key' in kw:
        kw['key_columns'] = kw.pop('key')
    return TableRef(*name.split('.'), **kw)


def test_resolve_defaults_to_primary_key_and_all_columns():
    r = resolve_table(spec(), ORDERS, ORDERS)
    assert r.source.key == ('id',) and r.source.columns == ('id', 'total', 'note')
    assert r.source.collate_c == (False,) and r.notes == []
    assert r.estimates == {'source': (1000, 10), 'target': (1000, 10)}


def test_resolve_replica_identity_index_and_explicit_key():
    t = info([col('a', 'text', True), col('b', 'integer', True), col('v')], ri=['a', 'b'])
    assert resolve_table(spec('s.t'), t, t).source.key == ('a', 'b')
    assert resolve_table(spec('s.t', key=('b',)), t, t).source.key == ('b',)


def test_resolve_columns_subset_keeps_source_order_and_key():
    target = info([col('note', 'text'), col('id', 'bigint', True)], pk=['id'])
    r = resolve_table(spec(columns=('note',)), ORDERS, target)
    assert r.source.columns == ('id', 'note') == r.target.columns


@pytest.mark.parametrize('source, target, kw, fragment', [
    (None, ORDERS, {}, 'does not exist on the source'),
    (info(None, kind=None), info(None, kind=None), {}, 'on the source and the target'),
    (info([col('id')]), info([col('id')]), {}, 'no primary key or replica identity'),
    (ORDERS, info([col('id', 'bigint', True)], pk=['id']), {}, 'total, note missing on the target'),
    (ORDERS, ORDERS, {'columns': ('nope',)}, 'nope missing on the source'),
    (ORDERS, ORDERS, {'key': ('total',)}, 'total (source), total (target) may be NULL'),
    (ORDERS, info([col('id', 'text', True), col('total'), col('note')], pk=['id']), {},
     'key column id is bigint on the source but text on the target'),
    (ORDERS, info([col('total'), col('note')]), {}, 'key column(s) id missing on the target'),
])
def test_resolve_errors(source, target, kw, fragment):
    with pytest.raises(CompareError) as e:
        resolve_table(spec(**kw), source, target)
    assert fragment in str(e.value)


def test_resolve_integer_and_text_families_are_compatible():
    source = info([col('id', 'integer', True), col('code', 'character varying(20)', True)], pk=['id', 'code'])
    target = info([col('id', 'bigint', True), col('code', 'text', True)], pk=['id', 'code'])
    assert resolve_table(spec('a.b'), source, target).source.key == ('id', 'code')


def test_resolve_collation_difference_uses_c_order():
    source = info([col('k', 'text', True, 'default/c/en_US.UTF-8'), col('n', 'integer', True)], pk=['k', 'n'])
    target = info([col('k', 'text', True, 'default/c/C.UTF-8'), col('n', 'integer', True)], pk=['k', 'n'])
    r = resolve_table(spec('a.b'), source, target)
    assert r.source.collate_c == (True, False) == r.target.collate_c
    assert 'key column k has collation' in r.notes[0]
    assert 'COLLATE "C"' in text(bucket_expr(r.source, [('m', '1')]))


def test_resolve_filters_and_sampling_side():
    big = info(ORDERS['columns'], pk=['id'], reltuples=5e6, relpages=50000, pages=60000)
    view = dict(ORDERS, kind='v')
    r = resolve_table(spec(where='total > 0', target_where=''), ORDERS, big)
    assert r.source.where == 'total > 0' and r.target.where is None
    assert r.sample_side == 'target' and r.estimates['target'] == (6000000, 60000)
    r = resolve_table(spec(where='total > 0'), view, ORDERS)
    assert r.target.where == 'total > 0' and not r.source.sample and r.target.sample


def test_estimate_without_statistics_uses_pages():
    never = info(ORDERS['columns'], pk=['id'], reltuples=-1, relpages=0, pages=200)
    assert resolve_table(spec(), never, never).estimates['source'] == (10000, 200)


def test_key_values_for_the_result():
    r = ResolvedTable(spec(), None, None, ['bigint', 'text', 'boolean', 'numeric'], {}, 'source')
    assert r.key_value(('42', 'a b', 'true', '1.50')) == [42, 'a b', True, '1.50']
    r = ResolvedTable(spec(), None, None, ['integer'], {}, 'source')
    assert r.key_value(('-7',)) == -7


# ---- SQL -------------------------------------------------------------------------------------

def side(key=('id',), columns=('id', 'v'), where=None, collate=None, checksum='hashtext',
         schema='s', name='t'):
    return SideTable(schema, name, key, columns, where, collate, checksum)


def test_identifiers_are_quoted_hostile_names():
    t = side(key=('Key "1";', LONG), columns=('Key "1";', LONG, 'va lue'), schema=HOSTILE_SCHEMA,
             name=HOSTILE_TABLE)
    q = text(compare_query(t, [('agg', Range(('a', '1'), None), [('b', '2')]),
                               ('leaf', Range(None, ('c', '3'))), ('list', Range(), 5)]))
    assert '"Wé""ird; Schema"."Order Items; DROP TABLE x --"' in q
    assert 'ROW("Key ""1"";", "%s")' % LONG in q
    assert 'ROW("Key ""1"";", "%s", "va lue")::text' % LONG in q
    assert "ROW('a', '1')" in q and 'LIMIT 5' in q
    assert 'DROP TABLE x --"' in q and q.count('UNION ALL') == 2


def test_key_literals_are_quoted_values():
    t = side(key=('a', 'b'))
    assert text(key_literal(t, ("it's", "x'); DROP TABLE t; --"))) == \
        "ROW('it''s', 'x''); DROP TABLE t; --')"
    with pytest.raises(CompareError):
        key_literal(t, ('only one',))


def test_where_is_placed_in_parentheses_on_every_branch():
    t = side(where="a = 1 OR b = 'x'")
    q = text(compare_query(t, [('agg', Range(('5',), ('9',)), []), ('leaf', Range())]))
    assert q.count("WHERE (a = 1 OR b = 'x') AND ") == 1
    assert q.count("(a = 1 OR b = 'x')") == 2
    assert "\"id\" >= '5' AND \"id\" < '9'" in q


def test_bucket_expr_is_a_binary_search():
    t = side()
    assert text(bucket_expr(t, [])) == '0'
    bounds = [(str(i * 10),) for i in range(1, 8)]
    q = text(bucket_expr(t, bounds))
    assert q.count('CASE WHEN') == 7
    # evaluate the nested CASE in Python to check every key lands in its bucket
    for key in range(0, 90):
        expected = bisect.bisect_right([i * 10 for i in range(1, 8)], key)
        assert _eval_case(q, key) == expected


def _eval_case(q, key):
    import re
    pos = 0
    while True:
        m = re.compile(r"CASE WHEN \"id\" < '(\d+)' THEN ").match(q, pos)
        if not m:
            return int(re.compile(r'\d+').match(q, pos).group(0))
        then_start = m.end()
        # find the matching ELSE at depth 0
        depth, i = 0, then_start
        while True:
            if q.startswith('CASE', i):
                depth += 1
            elif q.startswith('END', i):
                depth -= 1
            elif q.startswith(' ELSE ', i) and depth == 0:
                break
            i += 1
        pos = then_start if key < int(m.group(1)) else i + len(' ELSE ')


def test_checksums():
    assert text(row_hash(side())) == 'pg_catalog.hashtextextended(ROW("id", "v")::text, 0)'
    assert text(row_hash(side(checksum='md5'))) == \
        "('x' || pg_catalog.left(pg_catalog.md5(ROW(\"id\", \"v\")::text), 16))::bit(64)::bigint"


def test_bounds_query_sample_and_partitions():
    t = side(key=('a', 'b'), collate=(True, False))
    q = text(bounds_query(t, [(Range(), 40, 1.5), (Range(('x', '1'), ('y', '2')), 16, None)]))
    assert 'TABLESAMPLE SYSTEM (1.5) REPEATABLE (0)' in q and q.count('TABLESAMPLE') == 1
    assert '"a" COLLATE "C" AS "o0", "b" AS "o1"' in q
    assert 'PARTITION BY r ORDER BY "o0", "o1"' in q
    assert "ROW(\"a\" COLLATE \"C\", \"b\") >= ROW('x', '1')" in q
    no_sample = SideTable('s', 'v', ('a',), ('a',), sample=False)
    assert 'TABLESAMPLE' not in text(bounds_query(no_sample, [(Range(), 40, 1.5)]))


def test_session_statements():
    shown = [text(s) for s in session_statements(150000)]
    assert 'SET "TimeZone" = \'UTC\'' in shown and 'SET jit = off' in shown
    assert 'SET "default_transaction_read_only" = \'on\'' in shown
    assert 'SET jit = off' not in [text(s) for s in session_statements(100000)]


# ---- the engine against in-memory sides -------------------------------------------------------

class FakeSide(object):
    """A table as {int key: row hash}; answers like bounds_query()/compare_query() would."""

    def __init__(self, rows):
        self.rows = dict(rows)
        self.calls = []
        self.max_items = 0
        self.max_rows = 0

    def _keys(self, rng):
        keys = sorted(self.rows)
        lo = int(rng.lo[0]) if rng.lo else None
        hi = int(rng.hi[0]) if rng.hi else None
        return [k for k in keys if (lo is None or k >= lo) and (hi is None or k < hi)]

    def bounds(self, tasks):
        if tasks:
            self.calls.append(('bounds', len(tasks)))
        result = []
        for rng, n, _sample in tasks:
            keys = self._keys(rng)
            cnt = len(keys)
            result.append([(str(keys[rn - 1]),) for rn in range(2, cnt + 1)
                           if (rn - 1) * n // cnt > (rn - 2) * n // cnt])
        return result

    def compare(self, items):
        if items:
            self.calls.append(('compare', len(items)))
        self.max_items = max(self.max_items, len(items))
        result = []
        fetched = 0
        for item in items:
            keys = self._keys(item[1])
            if item[0] == 'agg':
                bounds = [int(b[0]) for b in item[2]]
                agg = {}
                for k in keys:
                    b = bisect.bisect_right(bounds, k)
                    n, s = agg.get(b, (0, 0))
                    agg[b] = (n + 1, s + self.rows[k])
                result.append(agg)
            elif item[0] == 'leaf':
                fetched += len(keys)
                result.append([((str(k),), self.rows[k]) for k in keys])
            else:
                fetched += min(len(keys), item[2])
                result.append([(str(k),) for k in keys[:item[2]]])
        self.max_rows = max(self.max_rows, fetched)
        return result


def resolved_for(rows, estimate=None):
    t = side()
    n = len(rows) if estimate is None else estimate
    return ResolvedTable(spec('s.t'), t, t, ['bigint'], {'source': (n, max(1, n // 100)),
                                                         'target': (n, max(1, n // 100))}, 'source')


def run(source_rows, target_rows, cap=100, tuning=None):
    s, t = FakeSide(source_rows), FakeSide(target_rows)
    r = resolved_for(source_rows)
    tuning = tuning or Tuning(top_rows_per_bucket=64, leaf_rows=8, fanout=4, exact_bounds_rows=10 ** 9)
    c = Comparison(s, t, cap, tuning, key_value=r.key_value).run([top_level_task(r, tuning)])
    return c, s, t


def table(n, seed=1):
    rnd = random.Random(seed)
    return dict((k, rnd.getrandbits(63)) for k in range(1, n + 1))


def test_equal_tables():
    rows = table(5000)
    c, s, t = run(rows, rows)
    assert c.total == 0 and not c.truncated and c.lists == {'missing': [], 'extra': [], 'changed': []}
    assert c.root_rows == [5000, 5000]
    # one split-key query and one checksum query per side: nothing to drill into
    assert s.calls == [('bounds', 1), ('compare', 1)] and t.calls == [('compare', 1)]
    assert c.ranges_checked == 79


def test_scattered_differences_are_named():
    src = table(5000)
    dst = dict(src)
    dst[17] ^= 1          # changed
    del dst[2500]         # missing on the target
    dst[6000] = 5         # extra, beyond the source's last key
    dst[0] = 5            # extra, before the first key
    del dst[4999]
    dst[3333] += 1
    c, s, t = run(src, dst)
    assert c.lists == {'missing': [2500, 4999], 'extra': [0, 6000], 'changed': [17, 3333]}
    assert c.counts == {'missing': 2, 'extra': 2, 'changed': 2}
    assert c.root_rows == [5000, 5000] and not c.truncated
    # only a few ranges were looked at below the top level
    assert c.ranges_checked < 79 + 6 * 4 * 4


def test_empty_target_lists_missing_up_to_the_cap_and_counts_all():
    src = table(3000)
    c, s, t = run(src, {}, cap=10)
    assert c.counts == {'missing': 3000, 'extra': 0, 'changed': 0}
    assert c.lists['missing'] == list(range(1, 11)) and c.truncated
    assert s.max_rows <= 10  # keys listed only up to the cap, the rest counted
    c, _s, _t = run({}, src, cap=3)
    assert c.counts['extra'] == 3000 and c.lists['extra'] == [1, 2, 3] and c.root_rows == [0, 3000]


def test_cap_keeps_the_first_keys_in_key_order():
    src = table(4000)
    dst = dict((k, v + 1) for k, v in src.items())  # every row changed
    c, s, t = run(src, dst, cap=25)
    assert c.counts['changed'] == 4000 and c.lists['changed'] == list(range(1, 26))
    assert c.truncated and c.listed == 25


def test_cap_zero_counts_only():
    src = table(500)
    dst = dict(src)
    del dst[7]
    c, s, t = run(src, dst, cap=0)
    assert c.counts['missing'] == 1 and c.lists['missing'] == [] and c.truncated


def test_dense_differences_compare_rows_in_bigger_leaves():
    src = table(4000)
    dst = dict((k, v + 1) for k, v in src.items())
    tuning = Tuning(top_rows_per_bucket=256, leaf_rows=16, fanout=16, exact_bounds_rows=10 ** 9,
                    max_leaf_rows=10 ** 6)
    c, s, t = run(src, dst, tuning=tuning)
    # top level: 16 buckets of 250 rows all differ -> rows compared at once, no further split
    assert [call for call in s.calls if call[0] == 'bounds'] == [('bounds', 1)]
    assert c.counts['changed'] == 4000


def test_batches_stay_bounded():
    src = table(20000)
    dst = dict(src)
    for k in range(1, 20001, 37):
        dst[k] += 1
    tuning = Tuning(top_rows_per_bucket=64, leaf_rows=8, fanout=4, exact_bounds_rows=10 ** 9,
                    max_tasks=16, max_leaf_rows=40)
    c, s, t = run(src, dst, cap=5, tuning=tuning)
    assert c.counts['changed'] == len(range(1, 20001, 37))
    assert c.lists['changed'] == [1, 38, 75, 112, 149]
    assert s.max_items <= 16 and t.max_items <= 16
    assert s.max_rows <= 40 + 8  # one leaf may overflow the budget when it is the first


def test_composite_like_non_unique_key_is_reported():
    class Dup(FakeSide):
        def compare(self, items):
            result = FakeSide.compare(self, items)
            for item, res in zip(items, result):
                if item[0] == 'leaf' and res:
                    res.append(res[0])
            return result
    s, t = FakeSide({1: 1, 2: 2}), Dup({1: 1, 2: 3})
    r = resolved_for({1: 1, 2: 2})
    with pytest.raises(CompareError) as e:
        Comparison(s, t, 10, key_value=r.key_value).run([top_level_task(r, Tuning())])
    assert 'key 1 is not unique on the target' in str(e.value)


def test_split_without_keys_falls_back_to_rows():
    class NoBounds(FakeSide):
        def bounds(self, tasks):
            return [[] for _task in tasks]
    src = table(300)
    dst = dict(src)
    dst[150] += 1
    s, t = NoBounds(src), NoBounds(dst)
    task = Task('split', Range(), counts=(300, 300), fanout=16, side='source')
    c = Comparison(s, t, 10).run([task])
    assert c.lists['changed'] == [['150']]


def test_retry_rechecks_only_differing_ranges():
    src = table(5000)
    dst = dict(src)
    dst[10] += 1
    dst[4000] += 1
    first, s, t = run(src, dst)
    assert first.counts['changed'] == 2 and len(first.diff_ranges) == 2
    t.rows[10] = src[10]  # the in-flight change arrived
    s.calls, t.calls = [], []
    again = Comparison(s, t, 100, key_value=resolved_for(src).key_value).run(retry_tasks(first))
    assert again.lists['changed'] == [4000] and again.root_rows == [
        sum(c[0] for _r, c in first.diff_ranges), sum(c[1] for _r, c in first.diff_ranges)]
    assert s.calls == [('compare', 2), ('compare', 1)] == t.calls  # re-check, then one leaf


def test_diff_ranges_overflow_is_flagged():
    src = table(2000)
    dst = dict((k, v + 1) for k, v in src.items())
    c, _s, _t = run(src, dst, tuning=Tuning(top_rows_per_bucket=64, leaf_rows=8, fanout=4,
                                            exact_bounds_rows=10 ** 9, max_retry_ranges=3))
    assert c.diff_ranges_overflow and len(c.diff_ranges) == 3


def test_top_level_task_sizes():
    tuning = Tuning()
    small = resolved_for({}, estimate=3000)
    assert top_level_task(small, tuning).kind == 'agg'
    mid = resolved_for({}, estimate=90000)
    task = top_level_task(mid, tuning)
    assert (task.kind, task.fanout, task.sample) == ('split', 22, None)  # exact split keys
    huge = resolved_for({}, estimate=10 ** 7)
    task = top_level_task(huge, tuning)
    assert task.fanout == 2442 and 0 < task.sample < 1
    giant = resolved_for({}, estimate=10 ** 9)
    assert top_level_task(giant, tuning).fanout == tuning.max_top_buckets


def test_table_result_shape():
    src = table(100)
    dst = dict(src)
    del dst[5]
    c, _s, _t = run(src, dst)
    r = resolved_for(src)
    out = table_result(r, c, 100, 99, 1, 0.12345, 4)
    assert out == {
        'equal': False, 'key': ['id'], 'columns': ['id', 'v'], 'source_rows': 100, 'target_rows': 99,
        'differences': {'missing': [5], 'extra': [], 'changed': []},
        'counts': {'missing': 1, 'extra': 0, 'changed': 0}, 'truncated': False,
        'ranges_checked': c.ranges_checked, 'attempts': 1, 'seconds': 0.123, 'query_count': 4,
        'notes': []}
