# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of the copies running now: figures, estimates and the line a person reads.

The copying server (a logical set's subscriber: its tablesync workers or the module's snapshot
copy workers) reports, per COPY, the rows and bytes received so far (``pg_stat_progress_copy``,
PostgreSQL 14+; pg_sync_info section ``copy_progress``). How many rows there are to copy is known
only to the source: ``estimate_sql`` reads the planner's estimate there (``pg_class.reltuples``,
summed over the partitions of a partitioned table). A row filter makes the estimate an upper
bound; a table never vacuumed or analysed has no estimate. Everything else here is pure."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified

# Per table asked for (by position), the estimated rows: the sum over the table and, for a
# partitioned table, its partitions; NULL when a table holding rows has no estimate yet.
ESTIMATES_SQL = '''
WITH RECURSIVE asked AS (
    SELECT x.i, c.oid
      FROM ROWS FROM (unnest(%s::text[]), unnest(%s::text[])) WITH ORDINALITY AS x(nsp, rel, i)
      JOIN pg_catalog.pg_namespace n ON n.nspname = x.nsp
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.rel
), tree AS (
    SELECT a.i, a.oid FROM asked a
    UNION ALL
    SELECT t.i, h.inhrelid FROM tree t JOIN pg_catalog.pg_inherits h ON h.inhparent = t.oid
)
SELECT t.i,
       CASE WHEN pg_catalog.bool_and(c.reltuples >= 0 OR c.relkind = 'p')
            THEN pg_catalog.sum(GREATEST(c.reltuples, 0))::bigint END
  FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.oid
 GROUP BY t.i
'''


def copy_tables(copies):
    """The distinct (schema, table) of the copies that name their table, in a stable order."""
    return sorted(set((c['schema'], c['relation']) for c in copies
                      if c.get('schema') is not None and c.get('relation') is not None))


def estimate_params(tables):
    return ([t[0] for t in tables], [t[1] for t in tables])


def estimates_by_table(tables, rows):
    """``rows`` of ESTIMATES_SQL (position from 1, estimate) -> {(schema, table): estimate}."""
    found = dict((int(i), total) for i, total in rows)
    return dict((table, found.get(n + 1)) for n, table in enumerate(tables))


def with_estimates(copies, estimates):
    """Each copy with ``table``, ``rows_total_estimate``, ``percent``, ``rows_per_second``,
    ``eta_seconds`` (None where unknown) and ``summary``, the line a person reads. ``estimates``:
    {(schema, table): rows} from the source, or None when the source was not asked."""
    out = []
    for copy in copies:
        item = dict(copy)
        schema, relation = item.pop('schema', None), item.pop('relation', None)
        item['table'] = format_qualified(schema, relation) if relation is not None else None
        total = (estimates or {}).get((schema, relation))
        item.update(progress_figures(item.get('rows_done') or 0, total, item.get('elapsed_seconds')))
        item['summary'] = summary(item)
        out.append(item)
    return out


def progress_figures(done, total, elapsed):
    """Rate, percentage and time left from rows done, the estimate and the seconds elapsed.
    The estimate can be low (the table grew since it was taken): the percentage then stops at
    99.9 and the time left is unknown rather than negative."""
    rate = done / elapsed if elapsed and elapsed > 0 else None
    figures = dict(rows_total_estimate=total, percent=None, rows_per_second=None, eta_seconds=None)
    if rate is not None:
        figures['rows_per_second'] = round(rate, 1)
    if total:
        figures['percent'] = round(min(99.9, 100.0 * done / total), 1)
        if rate and done < total:
            figures['eta_seconds'] = int(round((total - done) / rate))
    return figures


def human_bytes(value):
    value = float(value or 0)
    for unit in ('B', 'kB', 'MB', 'GB', 'TB'):
        if value < 1024 or unit == 'TB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return None  # pragma: no cover


def human_seconds(value):
    value = int(value)
    if value < 90:
        return '%d s' % value
    if value < 5400:
        return '%d min' % round(value / 60.0)
    return '%.1f h' % (value / 3600.0)


def summary(item):
    """``public.orders: 1234567 of ~5000000 rows (24.7%), 180.2 MB in 45 s, about 2 min left``."""
    name = item.get('table') or '(query)'
    done = item.get('rows_done') or 0
    total = item.get('rows_total_estimate')
    rows = ('%d of ~%d rows (%.1f%%)' % (done, total, item['percent'])) if total else '%d rows' % done
    text = '%s: %s, %s' % (name, rows, human_bytes(item.get('bytes_done')))
    if item.get('elapsed_seconds') is not None:
        text += ' in %s' % human_seconds(item['elapsed_seconds'])
    if item.get('eta_seconds') is not None:
        text += ', about %s left' % human_seconds(item['eta_seconds'])
    elif total is None:
        text += ', total unknown'
    return text
