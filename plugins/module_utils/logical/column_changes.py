# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Following a source's column changes on an existing target table (pure, no database I/O).

``plan_column_changes(desired, actual, caught_up)`` compares one table's source definition with
the target's and returns a ``ColumnPlan``:

* ``now``: statements safe at any moment, because they only let the target accept more: ADD
  COLUMN (the source's pre-existing rows' value given exactly, see below), lossless type
  widening, DROP NOT NULL on columns the source no longer has or no longer requires;
* ``after_catch_up``: statements that are safe only once the subscription has applied every
  change the source wrote before its own DDL (a change decoded before ``DROP COLUMN`` still
  carries the column): DROP COLUMN and SET NOT NULL. They are in ``statements`` only when
  ``caught_up`` is true, else listed in ``pending``;
* ``errors``: changes that cannot be followed without losing exactness, each naming the table,
  the column and the reason (type narrowing or any type change that is not a known lossless
  widening, collation or generation changes, a column that looks renamed, an added column whose
  pre-existing rows' value cannot be proven). Nothing of a table with an error is changed.

Why pre-existing rows need care: ``ALTER TABLE ... ADD COLUMN c ... DEFAULT x`` on the source
gives every existing row the value ``x`` without writing a row change, so nothing in the
replication stream tells the target. PostgreSQL 11+ keeps that value in
``pg_attribute.attmissingval`` (the "fast default") as long as the table was not rewritten: the
target column is added with exactly that value as its default (then the default is dropped, as
targets carry no defaults). A column without a default has NULL in every pre-existing row on both
sides. A default without a stored missing value (a volatile default such as ``random()``, or a
table rewritten since) cannot be proven: refused, with the runbook (re-copy the table).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.text_forms import TEXT_FORM_SETTINGS
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.table_defs import (
    catalog_sql, column_definition)

MODES = ('refuse', 'follow', 'ignore')

_INT_RANK = {'smallint': 1, 'integer': 2, 'bigint': 3}
_VARCHAR_RE = re.compile(r'^character varying(?:\((\d+)\))?$')
_CHAR_RE = re.compile(r'^character(?:\((\d+)\))?$')
_NUMERIC_RE = re.compile(r'^numeric(?:\((\d+),(\d+)\))?$')
_TIME_RE = re.compile(r'^(timestamp|time)(?:\((\d)\))? (with|without) time zone$')


def widening(source_type, target_type):
    """True when changing the target column from ``target_type`` to ``source_type`` keeps every
    value as it is (the types as format_type() prints them)."""
    s, t = str(source_type), str(target_type)
    if s == t:
        return False
    if s in _INT_RANK and t in _INT_RANK:
        return _INT_RANK[s] > _INT_RANK[t]
    if t in _INT_RANK and _NUMERIC_RE.match(s) and _NUMERIC_RE.match(s).group(1) is None:
        return True
    if t == 'real' and s == 'double precision':
        return True
    for pattern in (_VARCHAR_RE, _CHAR_RE):
        ms, mt = pattern.match(s), pattern.match(t)
        if ms and mt:
            # a longer char(m) pads the existing values further, as the source's ALTER did
            return _length_grows(mt.group(1), ms.group(1))
    if s == 'text' and _VARCHAR_RE.match(t):
        return True
    ms, mt = _NUMERIC_RE.match(s), _NUMERIC_RE.match(t)
    if ms and mt:
        if ms.group(1) is None:
            return True
        if mt.group(1) is None:
            return False
        return (ms.group(2) == mt.group(2)
                and int(ms.group(1)) >= int(mt.group(1)))
    ms, mt = _TIME_RE.match(s), _TIME_RE.match(t)
    if ms and mt and ms.group(1) == mt.group(1) and ms.group(3) == mt.group(3):
        return int(ms.group(2) or 6) >= int(mt.group(2) or 6)
    return False


def _length_grows(old, new):
    if new is None:
        return True
    if old is None:
        return False
    return int(new) > int(old)


class ColumnPlan(object):
    def __init__(self, table):
        self.table = table           # display name
        self.now = []                # statements
        self.after_catch_up = []     # statements
        self.changes = []            # human-readable, one per change
        self.pending = []            # human-readable changes waiting for the catch-up
        self.errors = []

    @property
    def empty(self):
        return not (self.now or self.after_catch_up or self.errors)

    def statements(self, caught_up):
        if self.errors:
            return []
        return self.now + (self.after_catch_up if caught_up else [])

    def report(self, caught_up):
        return dict(changes=self.changes + (self.pending if caught_up else []),
                    pending=[] if caught_up else list(self.pending))


def plan_column_changes(desired, actual):
    """One table: the source's ``desired`` TableDef against the target's ``actual`` one."""
    plan = ColumnPlan(desired.display)
    have = dict((c.name, c) for c in actual.columns)
    wanted = dict((c.name, c) for c in desired.columns)
    ident = sql.Identifier(desired.schema, desired.name)
    missing = [c for c in desired.columns if c.name not in have]
    extra = [c for c in actual.columns if c.name not in wanted]
    for column in missing:
        twins = [e.name for e in extra
                 if e.signature() == column.signature() and _maybe_renamed(desired, actual, e, column)]
        if twins:
            plan.errors.append(
                '%s: column %s is new on the source and %s of the same type is gone: this looks '
                'like a rename, which cannot be told apart from a drop and an add by the catalogs; '
                'rename it on the target when its subscription stops at the first change that '
                'carries the new name (see docs/schema-changes.md)'
                % (desired.display, column.name, ', '.join(twins)))
            continue
        _add_column(plan, ident, column)
    for column in desired.columns:
        current = have.get(column.name)
        if current is not None:
            _alter_column(plan, ident, column, current)
    for column in extra:
        if column.not_null:
            plan.now.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL').format(
                ident, sql.Identifier(column.name))))
        plan.after_catch_up.append(Statement(sql.SQL('ALTER TABLE {} DROP COLUMN {}').format(
            ident, sql.Identifier(column.name))))
        plan.pending.append('drop column %s' % column.name)
    if (desired.primary_key or (None, []))[1] != (actual.primary_key or (None, []))[1]:
        plan.errors.append('%s: the primary key differs (source %s, target %s); a changed key cannot '
                           'be followed: re-create the table on the target and copy it again'
                           % (desired.display, _key_text(desired.primary_key), _key_text(actual.primary_key)))
    return plan


def _maybe_renamed(desired, actual, gone, new):
    """Whether the source's column ``new`` may be the target's ``gone`` renamed.

    A rename keeps the column's attnum; an added column gets an attnum above every other. So
    when a column the source still has follows ``gone`` on the target, ``new`` is a rename
    exactly when its attnum lies before that column's. When ``gone`` is the target's last
    column, both are possible (treated as a possible rename, so refused).
    """
    if new.attnum is None:
        return True
    source = dict((c.name, c.attnum) for c in desired.columns)
    names = [c.name for c in actual.columns]
    at = names.index(gone.name)
    after = [source[n] for n in names[at + 1:] if source.get(n) is not None]
    return not after or new.attnum < min(after)


def _key_text(key):
    return '(%s)' % ', '.join(key[1]) if key else 'none'


def _add_column(plan, ident, column):
    if column.generated is not None:
        plan.now.append(Statement(sql.SQL('ALTER TABLE {} ADD COLUMN {}').format(ident, column_definition(column))))
        plan.changes.append('add generated column %s' % column.name)
        return
    if column.has_default and column.missing_value is None:
        plan.errors.append(
            '%s: column %s was added on the source with a default whose value in the rows that '
            'existed then cannot be read from the catalogs (a volatile default, or the table was '
            'rewritten since); add the column on the target and copy the table again'
            % (plan.table, column.name))
        return
    definition = column_definition(column)
    if column.missing_value is None:
        plan.now.append(Statement(sql.SQL('ALTER TABLE {} ADD COLUMN {}').format(ident, definition)))
        plan.changes.append('add column %s' % column.name)
        return
    if str(column.type).endswith('[]'):
        plan.errors.append('%s: column %s is an array added with a default; add it on the target and '
                           'copy the table again' % (plan.table, column.name))
        return
    plan.now.extend(Statement(sql.SQL('SET LOCAL {} = {}').format(sql.Identifier(name), sql.Literal(value)))
                    for name, value in TEXT_FORM_SETTINGS)
    value = sql.SQL('(CAST({} AS {}[]))[1]').format(sql.Literal(column.missing_value), catalog_sql(column.type))
    plan.now.append(Statement(sql.SQL('ALTER TABLE {} ADD COLUMN {} DEFAULT {}').format(ident, definition, value)))
    plan.now.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT').format(
        ident, sql.Identifier(column.name))))
    plan.changes.append('add column %s with the value the source gave its existing rows' % column.name)


def _alter_column(plan, ident, column, current):
    name = sql.Identifier(column.name)
    if column.signature() != current.signature():
        if column.generated is None and current.generated is None and widening(column.type, current.type):
            plan.now.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} TYPE {}').format(
                ident, name, _type_with_collation(column))))
            plan.changes.append('widen column %s from %s to %s' % (column.name, current.type, column.type))
        else:
            plan.errors.append('%s: column %s changed from %s to %s, which is not a lossless widening '
                               '(narrowing, another type, or a changed generation expression); '
                               'nothing was changed: re-create the column on the target and copy '
                               'the table again' % (plan.table, column.name, current.signature(),
                                                    column.signature()))
            return
    if column.collation != current.collation:
        plan.errors.append('%s: column %s has another collation on the source; changing it on the '
                           'target would reorder its indexes: re-create the column and copy the '
                           'table again' % (plan.table, column.name))
        return
    if current.not_null and not column.not_null:
        plan.now.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL').format(ident, name)))
        plan.changes.append('drop not null of %s' % column.name)
    elif column.not_null and not current.not_null:
        plan.after_catch_up.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET NOT NULL').format(
            ident, name)))
        plan.pending.append('set not null on %s' % column.name)


def _type_with_collation(column):
    parts = [catalog_sql(column.type)]
    if column.collation:
        parts.append(sql.SQL('COLLATE {}').format(sql.Identifier(*column.collation)))
    return sql.SQL(' ').join(parts)
