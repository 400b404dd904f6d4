# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verification of a table between two servers by key-range checksums (pg_table_compare).

Nothing but counts, checksums, split keys and (for small ranges) keys with row hashes leave the
servers. The comparison works on half-open key ranges ``[lo, hi)`` (``None`` = unbounded):

1. *split*: the side with more rows in a range picks split keys (every n-th key in key order;
   at the top level, of a block sample when the table is large), one query for all ranges;
2. *aggregate*: both sides compute, in one query each and at the same time, the row count and
   the sum of 64-bit row hashes of every sub-range; equal sub-ranges are done;
3. a differing sub-range is split again, or, once small (``leaf_rows``), both sides return its
   keys with their row hashes and the differing keys are named (missing, extra, changed); when
   one side has no rows in it, its keys are listed from the other side (up to the cap only).

Work is processed in key order, in batches of at most ``max_tasks`` ranges, depth first, so
memory stays bounded however many rows differ. Keys travel as their text forms and come back
into SQL as untyped literals (PostgreSQL coerces them to the key column's type), so any key type
with a text round trip works, and Python never has to order keys.

The pure parts (option parsing, table resolution, SQL building, the drill-down engine with
pluggable sides) are unit-tested without a database.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import (
    parse_table_refs)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.compare_sql import CompareError, parallel

KINDS = ('missing', 'extra', 'changed')
TABLE_KEYS = ('name', 'columns', 'where', 'target_where', 'key_columns', 'replica_identity')
INT_TYPES = frozenset(('smallint', 'integer', 'bigint'))
# key column types that order alike although their names differ (typmods are ignored too)
_TYPE_FAMILIES = {'smallint': 'integer', 'integer': 'integer', 'bigint': 'integer',
                  'character varying': 'text', 'text': 'text'}


class Tuning(object):
    """Sizes of the drill-down; the defaults suit tables from a few rows to tens of millions."""

    def __init__(self, top_rows_per_bucket=4096, max_top_buckets=4096, fanout=16, leaf_rows=256,
                 max_tasks=256, max_leaf_rows=50000, sample_rows_per_bucket=20,
                 exact_bounds_rows=100000, min_sample_pages=64, max_sample_percent=20.0,
                 max_retry_ranges=1000, max_depth=64):
        self.top_rows_per_bucket = top_rows_per_bucket
        self.max_top_buckets = max_top_buckets
        self.fanout = fanout
        self.leaf_rows = leaf_rows
        self.max_tasks = max_tasks
        self.max_leaf_rows = max_leaf_rows
        self.sample_rows_per_bucket = sample_rows_per_bucket
        self.exact_bounds_rows = exact_bounds_rows
        self.min_sample_pages = min_sample_pages
        self.max_sample_percent = max_sample_percent
        self.max_retry_ranges = max_retry_ranges
        self.max_depth = max_depth


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------

def parse_table_specs(items):
    """The ``tables`` option -> list of TableRef (``core.tables``; strings or dicts, as
    pg_publication takes, plus ``key`` and ``target_where``). Every problem is named at once."""
    if not isinstance(items, list) or not items:
        raise CompareError('tables must be a non-empty list')
    # this module's option says key (the columns rows are matched by); the model's key_columns
    renamed = [dict((('key_columns' if k == 'key' else k), v) for k, v in item.items())
               if isinstance(item, dict) and 'key_columns' not in item else item for item in items]
    specs, errors = parse_table_refs(renamed, TABLE_KEYS)
    if errors:
        raise CompareError('; '.join(e.replace('key_columns', 'key') for e in errors))
    return specs


# --------------------------------------------------------------------------------------------
# Resolving a table against both catalogs
# --------------------------------------------------------------------------------------------

class SideTable(object):
    """What one side's queries need: names, key, compared columns, filter, checksum."""

    __slots__ = ('schema', 'name', 'key', 'collate_c', 'columns', 'where', 'checksum', 'sample')

    def __init__(self, schema, name, key, columns, where=None, collate_c=None, checksum='hashtext',
                 sample=True):
        self.schema = schema
        self.name = name
        self.key = tuple(key)
        self.collate_c = tuple(collate_c) if collate_c else (False,) * len(self.key)
        self.columns = tuple(columns)
        self.where = where or None
        self.checksum = checksum
        self.sample = sample  # TABLESAMPLE is possible (tables and materialized views)


class ResolvedTable(object):
    """A table ready to compare: both SideTables, the key's output conversion, estimates."""

    def __init__(self, spec, source, target, key_types, estimates, sample_side, notes=()):
        self.spec = spec
        self.source = source
        self.target = target
        self.key_types = key_types
        self.estimates = estimates  # {'source': (rows, pages), 'target': (rows, pages)}
        self.sample_side = sample_side
        self.notes = list(notes)

    @property
    def shown(self):
        return self.spec.shown

    def key_value(self, kt):
        """Key text tuple -> JSON-friendly value (scalar for one column, list for several)."""
        values = [_convert(text, typ) for text, typ in zip(kt, self.key_types)]
        return values[0] if len(values) == 1 else values


def _convert(text, typ):
    if text is None:
        return None
    if typ in INT_TYPES:
        return int(text)
    if typ == 'boolean':
        return text in ('true', 't')
    return text


def _family(type_name):
    base = type_name.split('(')[0].strip()
    return _TYPE_FAMILIES.get(base, base)


def _estimate(info):
    """Planner-like row estimate: reltuples scaled to the current size; (rows, pages)."""
    pages = info.get('pages') or 0
    reltuples = info.get('reltuples')
    relpages = info.get('relpages') or 0
    if reltuples is not None and reltuples >= 0 and relpages > 0:
        return int(reltuples / relpages * pages), pages
    if reltuples is not None and reltuples > 0:
        return int(reltuples), pages
    return pages * 50, pages


def resolve_table(spec, source_info, target_info, checksum='hashtext'):
    """Check a TableRef against both catalog rows -> ResolvedTable, or CompareError naming all problems.

    ``*_info``: dicts as the catalog query returns them (``kind`` None when the table is missing),
    with ``columns`` (name, type, not_null, collation identity), ``pk``, ``ri``, ``reltuples``,
    ``relpages``, ``pages``.
    """
    shown = spec.shown
    missing = [side for side, info in (('source', source_info), ('target', target_info))
               if not info or not info.get('kind')]
    if missing:
        raise CompareError('table %s does not exist on the %s' % (shown, ' and the '.join(missing)))
    scols = collections.OrderedDict((c['name'], c) for c in source_info.get('columns') or ())
    tcols = dict((c['name'], c) for c in target_info.get('columns') or ())
    problems = []
    if spec.key_columns:
        key = list(spec.key_columns)
    else:
        key = list(source_info.get('pk') or source_info.get('ri') or ())
        if not key:
            raise CompareError('table %s has no primary key or replica identity index on the source; '
                               'give its unique, NOT NULL key columns in key' % shown)
    for side, cols in (('source', scols), ('target', tcols)):
        absent = [c for c in key if c not in cols]
        if absent:
            problems.append('key column(s) %s missing on the %s' % (', '.join(absent), side))
    if not problems:
        nullable = ['%s (%s)' % (c, side) for c in key
                    for side, cols in (('source', scols), ('target', tcols)) if not cols[c].get('not_null')]
        if nullable:
            problems.append('key column(s) %s may be NULL; the key must be unique and NOT NULL'
                            % ', '.join(nullable))
        for c in key:
            if _family(scols[c]['type']) != _family(tcols[c]['type']):
                problems.append('key column %s is %s on the source but %s on the target (they would '
                                'not sort alike)' % (c, scols[c]['type'], tcols[c]['type']))
    if spec.columns:
        unknown = [c for c in spec.columns if c not in scols]
        if unknown:
            problems.append('column(s) %s missing on the source' % ', '.join(unknown))
        wanted = set(spec.columns) | set(key)
        columns = [c for c in scols if c in wanted]
    else:
        columns = list(scols)
    absent = [c for c in columns if c not in tcols and c not in key]
    if absent:
        problems.append('column(s) %s missing on the target (list the columns to compare in columns)'
                        % ', '.join(absent))
    if problems:
        raise CompareError('cannot compare table %s: %s' % (shown, '; '.join(problems)))
    collate_c = []
    notes = []
    for c in key:
        scoll, tcoll = scols[c].get('collation'), tcols[c].get('collation')
        differ = bool(scoll or tcoll) and scoll != tcoll
        collate_c.append(differ)
        if differ:
            notes.append('key column %s has collation %s on the source and %s on the target; ranges '
                         'use the "C" order (no index use)' % (c, scoll, tcoll))
    target_where = spec.where if spec.target_where is None else (spec.target_where or None)
    source = SideTable(spec.schema, spec.name, key, columns, spec.where, collate_c, checksum,
                       sample=source_info['kind'] in ('r', 'm', 'p'))
    target = SideTable(spec.schema, spec.name, key, columns, target_where, collate_c, checksum,
                       sample=target_info['kind'] in ('r', 'm', 'p'))
    est = {'source': _estimate(source_info), 'target': _estimate(target_info)}
    sample_side = 'target' if est['target'][0] > est['source'][0] else 'source'
    return ResolvedTable(spec, source, target, [scols[c]['type'] for c in key], est, sample_side, notes)


# --------------------------------------------------------------------------------------------
# The drill-down
# --------------------------------------------------------------------------------------------

class Range(object):
    __slots__ = ('lo', 'hi')

    def __init__(self, lo=None, hi=None):
        self.lo = tuple(lo) if lo is not None else None
        self.hi = tuple(hi) if hi is not None else None

    def __eq__(self, other):
        return isinstance(other, Range) and (self.lo, self.hi) == (other.lo, other.hi)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.lo, self.hi))

    def __repr__(self):
        return 'Range(%r, %r)' % (self.lo, self.hi)


class Task(object):
    """A range to work on: split (find split keys), agg (compare sub-range checksums), leaf
    (compare rows), list (keys of a range only one side has rows in).

    ``path``: the sub-range indexes from the root; paths sort in key order, so differences are
    reported in key order whatever order the batches ran in.
    """

    __slots__ = ('kind', 'rng', 'counts', 'bounds', 'fanout', 'sample', 'side', 'root', 'path')

    def __init__(self, kind, rng, counts=None, bounds=(), fanout=None, sample=None, side=None,
                 root=False, path=()):
        self.kind = kind
        self.rng = rng
        self.counts = counts  # (source rows, target rows) when known
        self.bounds = tuple(bounds)
        self.fanout = fanout
        self.sample = sample
        self.side = side
        self.root = root
        self.path = tuple(path)

    def __repr__(self):
        return 'Task(%s, %r, counts=%r, side=%r, path=%r)' % (
            self.kind, self.rng, self.counts, self.side, self.path)


def top_level_task(resolved, tuning):
    """The whole table: split into buckets of about ``top_rows_per_bucket`` rows (by estimate)."""
    side = resolved.sample_side
    rows, pages = resolved.estimates[side]
    buckets = max(1, min(tuning.max_top_buckets, -(-rows // tuning.top_rows_per_bucket)))
    if buckets == 1:
        return Task('agg', Range(), root=True)
    sample = None
    if rows > tuning.exact_bounds_rows and pages > 0:
        sample = max(100.0 * buckets * tuning.sample_rows_per_bucket / rows,
                     100.0 * tuning.min_sample_pages / pages)
        if sample > tuning.max_sample_percent:
            sample = None
        else:
            sample = round(sample, 4)
    return Task('split', Range(), fanout=buckets, sample=sample, side=side, root=True)


class Comparison(object):
    """Drill-down over key ranges between two sides; collects counts and (capped) keys.

    ``source``/``target``: objects with ``bounds(tasks)`` and ``compare(items)`` (SqlSide, or a
    fake in the unit tests). ``key_value``: converts a key text tuple for the result.
    """

    def __init__(self, source, target, max_differences, tuning=None, key_value=None):
        self.sides = {'source': source, 'target': target}
        self.cap = max_differences
        self.tuning = tuning or Tuning()
        self.key_value = key_value or list
        self.counts = dict((k, 0) for k in KINDS)
        self._found = []  # (position, kind, key text tuple), pruned to the first ``cap``
        self._cutoff = None  # position of the cap-th difference once that many were found
        self.ranges_checked = 0
        self.rounds = 0
        self.root_rows = [0, 0]
        self.diff_ranges = []  # (Range, (source rows, target rows)) where differences were found
        self.diff_ranges_overflow = False

    # -- results ---------------------------------------------------------------------------
    @property
    def total(self):
        return sum(self.counts.values())

    @property
    def lists(self):
        """The first ``cap`` differing keys in key order, by kind."""
        self._prune()
        lists = dict((k, []) for k in KINDS)
        for _pos, kind, kt in self._found:
            lists[kind].append(self.key_value(kt))
        return lists

    @property
    def listed(self):
        self._prune()
        return len(self._found)

    @property
    def truncated(self):
        return self.total > self.listed

    def _wanted(self, position):
        return self.cap > 0 and (self._cutoff is None or position < self._cutoff)

    def _difference(self, kind, kt, position):
        self.counts[kind] += 1
        if self._wanted(position):
            self._found.append((position, kind, kt))
            if len(self._found) >= 2 * self.cap:
                self._prune()

    def _prune(self):
        self._found.sort(key=lambda item: item[0])
        if len(self._found) >= self.cap:
            del self._found[self.cap:]
            self._cutoff = self._found[-1][0] if self.cap else ()

    def _diff_range(self, rng, counts):
        if len(self.diff_ranges) >= self.tuning.max_retry_ranges:
            self.diff_ranges_overflow = True
        else:
            self.diff_ranges.append((rng, counts))

    # -- driving ---------------------------------------------------------------------------
    def run(self, tasks):
        pending = collections.deque(tasks)
        while pending:
            batch = self._take(pending)
            children = self._round(batch)
            pending.extendleft(reversed(children))
        return self

    def _rows_fetched(self, task):
        if task.kind == 'leaf':
            return max(task.counts)
        if task.kind == 'list':
            return self._list_limit(task)
        return 0

    def _list_limit(self, task):
        if not self._wanted(task.path):
            return 0
        return min(task.counts[0 if task.side == 'source' else 1], self.cap)

    def _take(self, pending):
        batch = []
        rows = 0
        while pending and len(batch) < self.tuning.max_tasks:
            size = self._rows_fetched(pending[0])
            if batch and size and rows + size > self.tuning.max_leaf_rows:
                break
            rows += size
            batch.append(pending.popleft())
        return batch

    def _round(self, batch):
        self.rounds += 1
        splits = [t for t in batch if t.kind == 'split']
        if splits:
            self._split(splits)
        items = {'source': [], 'target': []}
        index = {}  # id(task) -> (index in source items, index in target items) / index on its side
        reserved = 0  # keys earlier list tasks of this batch will surely name (they come first)
        for task in batch:
            if task.kind in ('agg', 'leaf'):
                item = ('agg', task.rng, task.bounds) if task.kind == 'agg' else ('leaf', task.rng)
                index[id(task)] = (len(items['source']), len(items['target']))
                items['source'].append(item)
                items['target'].append(item)
            elif task.kind == 'list':
                limit = min(self._list_limit(task), max(0, self.cap - reserved))
                reserved += limit
                if limit:
                    index[id(task)] = len(items[task.side])
                    items[task.side].append(('list', task.rng, limit))
        res_s, res_t = parallel(lambda: self.sides['source'].compare(items['source']),
                                lambda: self.sides['target'].compare(items['target']))
        children = []
        for task in batch:
            if task.kind == 'agg':
                i_s, i_t = index[id(task)]
                children.extend(self._agg_done(task, res_s[i_s], res_t[i_t]))
            elif task.kind == 'leaf':
                i_s, i_t = index[id(task)]
                self._leaf_done(task, res_s[i_s], res_t[i_t])
            else:
                keys = []
                if id(task) in index:
                    keys = (res_s if task.side == 'source' else res_t)[index[id(task)]]
                self._list_done(task, keys)
        return children

    def _split(self, splits):
        wanted = {'source': [], 'target': []}
        for task in splits:
            wanted[task.side].append(task)
        found = parallel(
            lambda: self.sides['source'].bounds([(t.rng, t.fanout, t.sample) for t in wanted['source']]),
            lambda: self.sides['target'].bounds([(t.rng, t.fanout, t.sample) for t in wanted['target']]))
        for side, bounds_lists in zip(('source', 'target'), found):
            for task, bounds in zip(wanted[side], bounds_lists):
                clean = []
                for b in bounds:
                    if b != task.rng.lo and (not clean or b != clean[-1]):
                        clean.append(b)
                if not clean and task.counts is not None:
                    # nothing to split on (rows vanished meanwhile, or a non-unique key): compare rows
                    task.kind = 'leaf'
                else:
                    task.kind = 'agg'
                    task.bounds = tuple(clean)

    def _agg_done(self, task, subs_s, subs_t):
        bounds = task.bounds
        parts = len(bounds) + 1
        if task.root:
            self.root_rows[0] += sum(n for n, _s in subs_s.values())
            self.root_rows[1] += sum(n for n, _s in subs_t.values())
        differing = []
        for b in range(parts):
            self.ranges_checked += 1
            n_s, s_s = subs_s.get(b, (0, 0))
            n_t, s_t = subs_t.get(b, (0, 0))
            if n_s == n_t and (n_s == 0 or s_s == s_t):
                continue
            rng = Range(task.rng.lo if b == 0 else bounds[b - 1],
                        task.rng.hi if b == parts - 1 else bounds[b])
            differing.append((rng, n_s, n_t, task.path + (b,)))
        # Most sub-ranges differ: the differences are dense, so comparing rows at once (in
        # bigger leaves) is cheaper than splitting further.
        dense = parts > 1 and 2 * len(differing) >= parts
        return [self._classify(rng, n_s, n_t, path, dense) for rng, n_s, n_t, path in differing]

    def _classify(self, rng, n_s, n_t, path, dense=False):
        counts = (n_s, n_t)
        if n_s == 0 or n_t == 0:
            return Task('list', rng, counts, side='source' if n_s else 'target', path=path)
        biggest = max(n_s, n_t)
        leaf_rows = self.tuning.leaf_rows * (self.tuning.fanout if dense else 1)
        if biggest <= leaf_rows or len(path) >= self.tuning.max_depth:
            return Task('leaf', rng, counts, path=path)
        fanout = max(2, min(self.tuning.fanout, -(-biggest // self.tuning.leaf_rows)))
        return Task('split', rng, counts, fanout=fanout,
                    side='source' if n_s >= n_t else 'target', path=path)

    def _leaf_done(self, task, rows_s, rows_t):
        self.ranges_checked += 1
        if task.root:
            self.root_rows[0] += len(rows_s)
            self.root_rows[1] += len(rows_t)
        src = collections.OrderedDict()
        for kt, h in rows_s:
            if kt in src:
                raise CompareError('key %s is not unique on the source' % (self.key_value(kt),))
            src[kt] = h
        dst = collections.OrderedDict()
        for kt, h in rows_t:
            if kt in dst:
                raise CompareError('key %s is not unique on the target' % (self.key_value(kt),))
            dst[kt] = h
        before = self.total
        for i, (kt, h) in enumerate(src.items()):
            if kt not in dst:
                self._difference('missing', kt, task.path + (i,))
            elif dst[kt] != h:
                self._difference('changed', kt, task.path + (i,))
        for i, kt in enumerate(dst):
            if kt not in src:
                self._difference('extra', kt, task.path + (i,))
        if self.total > before:
            self._diff_range(task.rng, (len(rows_s), len(rows_t)))

    def _list_done(self, task, keys):
        kind = 'missing' if task.side == 'source' else 'extra'
        n = task.counts[0 if task.side == 'source' else 1]
        if task.root:
            self.root_rows[0] += task.counts[0]
            self.root_rows[1] += task.counts[1]
        keys = keys[:n]
        for i, kt in enumerate(keys):
            self._difference(kind, kt, task.path + (i,))
        self.counts[kind] += n - len(keys)
        self._diff_range(task.rng, task.counts)


def retry_tasks(previous):
    """Tasks re-checking only the ranges where ``previous`` (a Comparison) found differences."""
    return [Task('agg', rng, root=True, path=(i,)) for i, (rng, _counts) in enumerate(previous.diff_ranges)]


def table_result(resolved, comparison, source_rows, target_rows, attempts, seconds, query_count):
    """The per-table entry of the module result."""
    return {
        'equal': comparison.total == 0,
        'key': list(resolved.source.key),
        'columns': list(resolved.source.columns),
        'source_rows': source_rows,
        'target_rows': target_rows,
        'differences': dict((k, list(comparison.lists[k])) for k in KINDS),
        'counts': dict(comparison.counts),
        'truncated': comparison.truncated,
        'ranges_checked': comparison.ranges_checked,
        'attempts': attempts,
        'seconds': round(seconds, 3),
        'query_count': query_count,
        'notes': list(resolved.notes),
    }
