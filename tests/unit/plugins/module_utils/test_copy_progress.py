# -*- coding: utf-8 -*-
"""The copy progress figures: estimates by table, percentages, time left, the summary line."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.copy_progress import (
    copy_tables, estimate_params, estimates_by_table, human_bytes, human_seconds,
    progress_figures, with_estimates)


def copy(schema='public', relation='orders', rows=0, bytes_done=0, elapsed=None):
    return dict(pid=1, command='COPY FROM', type='PIPE', schema=schema, relation=relation,
                rows_done=rows, bytes_done=bytes_done, elapsed_seconds=elapsed)


def test_tables_are_distinct_sorted_and_skip_query_copies():
    copies = [copy(relation='b'), copy(relation='a'), copy(relation='b'),
              copy(schema=None, relation=None)]
    assert copy_tables(copies) == [('public', 'a'), ('public', 'b')]
    assert estimate_params(copy_tables(copies)) == (['public', 'public'], ['a', 'b'])


def test_estimates_by_position_missing_table_is_unknown():
    tables = [('public', 'a'), ('public', 'b'), ('s', 'c')]
    # position 2 not found on the source (dropped or renamed), 3 never analysed (NULL)
    assert estimates_by_table(tables, [(1, 500), (3, None)]) == {
        ('public', 'a'): 500, ('public', 'b'): None, ('s', 'c'): None}


def test_figures_halfway():
    figures = progress_figures(500, 1000, 10.0)
    assert figures == dict(rows_total_estimate=1000, percent=50.0, rows_per_second=50.0,
                           eta_seconds=10)


def test_figures_estimate_too_low_stops_below_100_and_no_negative_eta():
    figures = progress_figures(1500, 1000, 10.0)
    assert figures['percent'] == 99.9
    assert figures['eta_seconds'] is None


def test_figures_without_estimate_or_time():
    assert progress_figures(10, None, 5.0) == dict(rows_total_estimate=None, percent=None,
                                                   rows_per_second=2.0, eta_seconds=None)
    assert progress_figures(0, 1000, None) == dict(rows_total_estimate=1000, percent=0.0,
                                                   rows_per_second=None, eta_seconds=None)
    # nothing copied yet: no rate, so no time left
    assert progress_figures(0, 1000, 3.0)['eta_seconds'] is None


def test_with_estimates_shapes_each_copy_and_writes_the_summary():
    out = with_estimates([copy(relation='orders', rows=1200000, bytes_done=98304000, elapsed=30.0)],
                         {('public', 'orders'): 5000000})
    item = out[0]
    assert 'schema' not in item and 'relation' not in item
    assert item['table'] == 'public.orders'
    assert item['percent'] == 24.0 and item['eta_seconds'] == 95
    assert item['summary'] == ('public.orders: 1200000 of ~5000000 rows (24.0%), 93.8 MB in 30 s,'
                               ' about 2 min left')


def test_summary_without_source_and_for_a_query_copy():
    out = with_estimates([copy(rows=7, bytes_done=100, elapsed=2.0),
                          copy(schema=None, relation=None, rows=3)], None)
    assert out[0]['summary'] == 'public.orders: 7 rows, 100 B in 2 s, total unknown'
    assert out[1]['table'] is None
    assert out[1]['summary'] == '(query): 3 rows, 0 B, total unknown'


def test_quoted_table_names_read_back():
    out = with_estimates([copy(schema='my.schema', relation='t')], {})
    assert out[0]['table'] == '"my.schema".t'


def test_human_units():
    assert human_bytes(1023) == '1023 B'
    assert human_bytes(1536) == '1.5 kB'
    assert human_bytes(5 * 1024 ** 4) == '5.0 TB'
    assert human_seconds(89) == '89 s'
    assert human_seconds(600) == '10 min'
    assert human_seconds(7200) == '2.0 h'
