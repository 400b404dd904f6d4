# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_sequence_sync: copy sequence positions from the source, never backwards.

A sequence's *position* is the last value it handed out: ``last_value`` once ``is_called``,
else ``last_value - increment`` (the value before the first one it will hand out). The target
is moved to the source's position plus ``margin`` (minus, for a descending sequence) only when
that is ahead of the target's position, with ``setval(seq, position, true)``; the statement
re-checks the target's position itself, so a target sequence that moved ahead meanwhile is left
alone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, format_qualified, parse_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, quote_ident)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_ref

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

SEQUENCE_KEYS = frozenset(('name', 'target'))


class SequenceError(TablesyncError):
    def __init__(self, messages):
        if isinstance(messages, str):
            messages = [messages]
        super(SequenceError, self).__init__(' '.join(messages))
        self.messages = list(messages)


def _qualified(name, what):
    if not isinstance(name, str):
        raise SequenceError('%s must be a schema.name string, got %r' % (what, name))
    try:
        return parse_qualified(name)
    except NameError_ as e:
        raise SequenceError('%s: %s' % (what, e))


def parse_tables(items):
    """``tables`` -> list of (schema, table), each once (``core.tables``: names only); every
    bad item named at once."""
    keys, errors = [], []
    for item in items or ():
        try:
            key = parse_table_ref(item, ('name',)).key
        except ValueError as e:
            errors.append('tables item: %s' % e)
            continue
        if key not in keys:
            keys.append(key)
    if errors:
        raise SequenceError(errors)
    return keys


def parse_sequences(items):
    """``sequences`` -> list of (source key, target key); an item is a name or {name, target}."""
    pairs = []
    for item in items or ():
        if isinstance(item, dict):
            unknown = sorted(set(item) - SEQUENCE_KEYS)
            if unknown:
                raise SequenceError('unknown key(s) %s in sequences item %r; allowed: name, target'
                                    % (', '.join(unknown), item))
            if not item.get('name'):
                raise SequenceError('sequences item %r has no name' % (item,))
            source = _qualified(item['name'], 'sequences item name')
            target = _qualified(item.get('target') or item['name'], 'sequences item target')
        else:
            source = target = _qualified(item, 'sequences item')
        if (source, target) not in pairs:
            pairs.append((source, target))
    return pairs


class SequenceState(object):
    """One sequence as read on a server."""

    __slots__ = ('key', 'last_value', 'is_called', 'increment', 'minimum', 'maximum')

    def __init__(self, key, last_value, is_called, increment, minimum, maximum):
        self.key = tuple(key)
        self.last_value = int(last_value)
        self.is_called = bool(is_called)
        self.increment = int(increment)
        self.minimum = int(minimum)
        self.maximum = int(maximum)

    @property
    def position(self):
        """The last value handed out (or the one before the first it will hand out)."""
        return self.last_value if self.is_called else self.last_value - self.increment

    @property
    def ascending(self):
        return self.increment > 0


class Link(object):
    """A sequence a table column uses (owned by it, identity, or in its default)."""

    __slots__ = ('table', 'column', 'sequence')

    def __init__(self, table, column, sequence):
        self.table = tuple(table)
        self.column = column
        self.sequence = tuple(sequence)


def shown(key):
    return format_qualified(*key)


def resolve_pairs(tables, sequences, source_tables, source_links, target_links, target_sequences):
    """Which source sequence goes to which target sequence.

    ``source_tables``: the requested tables that exist on the source; ``*_links``: Link lists of
    the requested tables on each server; ``target_sequences``: keys of sequences on the target.
    Sequences of a table's column go to the sequence the same column uses on the target, else to
    the target sequence of the same name. Returns a list of dicts (source, target, table,
    column), or raises SequenceError naming every problem.
    """
    problems = []
    missing_tables = [shown(t) for t in tables if t not in source_tables]
    if missing_tables:
        problems.append('table(s) %s do not exist on the source.' % ', '.join(missing_tables))
    by_column = dict(((l.table, l.column), l.sequence) for l in target_links)
    pairs = []
    seen = {}

    def add(source, target, table=None, column=None):
        if target in seen:
            if seen[target] != source:
                problems.append('target sequence %s would receive both %s and %s.'
                                % (shown(target), shown(seen[target]), shown(source)))
            return
        seen[target] = source
        pairs.append({'source': source, 'target': target, 'table': table, 'column': column})

    for link in source_links:
        target = by_column.get((link.table, link.column))
        if target is None and link.sequence in target_sequences:
            target = link.sequence
        if target is None:
            problems.append('sequence %s of %s.%s has no counterpart on the target (no sequence '
                            'used by that column, none of that name).'
                            % (shown(link.sequence), shown(link.table), link.column))
            continue
        add(link.sequence, target, shown(link.table), link.column)
    for source, target in sequences:
        if target not in target_sequences:
            problems.append('sequence %s does not exist on the target.' % shown(target))
            continue
        add(source, target)
    if problems:
        raise SequenceError(problems)
    return pairs


def plan(pairs, source_states, target_states, margin=0):
    """Desired positions and the statements -> (list of result dicts, list of Statement).

    ``*_states``: dicts key -> SequenceState. Never plans a move backwards. Raises SequenceError
    for sequences missing on the source, opposite directions, or a position beyond the target's
    range.
    """
    if margin < 0:
        raise SequenceError('margin must not be negative')
    problems = []
    results = []
    statements = []
    for pair in pairs:
        src = source_states.get(pair['source'])
        dst = target_states.get(pair['target'])
        if src is None:
            problems.append('sequence %s does not exist on the source.' % shown(pair['source']))
            continue
        if dst is None:
            problems.append('sequence %s does not exist on the target.' % shown(pair['target']))
            continue
        if src.ascending != dst.ascending:
            problems.append('sequence %s counts %s on the source but %s on the target (%s).'
                            % (shown(pair['target']), 'up' if src.ascending else 'down',
                               'up' if dst.ascending else 'down', shown(pair['source'])))
            continue
        desired = src.position + margin if dst.ascending else src.position - margin
        ahead = desired > dst.position if dst.ascending else desired < dst.position
        if ahead and not dst.minimum <= desired <= dst.maximum:
            problems.append('sequence %s cannot take %d (the source position %d with margin %d): '
                            'it is outside its range %d..%d.'
                            % (shown(pair['target']), desired, src.position, margin,
                               dst.minimum, dst.maximum))
            continue
        results.append({
            'name': shown(pair['target']),
            'source': shown(pair['source']),
            'table': pair['table'],
            'column': pair['column'],
            'source_value': src.position,
            'target_value': dst.position,
            'new_value': desired if ahead else None,
            'changed': ahead,
        })
        if ahead:
            statements.append(setval_statement(dst, desired))
    if problems:
        raise SequenceError(problems)
    return results, statements


def setval_statement(target, value):
    """setval() guarded by the target's own position, read in the same statement."""
    key = target.key
    op = '<' if target.ascending else '>'
    return Statement(
        sql.SQL('SELECT pg_catalog.setval(%s::regclass, %s, true) FROM {seq} '
                'WHERE CASE WHEN is_called THEN last_value ELSE last_value - %s END {op} %s').format(
                    seq=sql.Identifier(*key), op=sql.SQL(op)),
        ('%s.%s' % (quote_ident(key[0]), quote_ident(key[1])), value, target.increment, value))


def values_query(keys):
    """One query reading ``last_value`` and ``is_called`` of every sequence: rows (index, ...)."""
    if not keys:
        return None
    return sql.SQL(' UNION ALL ').join(
        sql.SQL('SELECT {i} AS i, last_value, is_called FROM {seq}').format(
            i=sql.SQL(str(i)), seq=sql.Identifier(*key)) for i, key in enumerate(keys))


def diff(results):
    before = dict((r['name'], r['target_value']) for r in results)
    after = dict((r['name'], r['new_value'] if r['changed'] else r['target_value']) for r in results)
    return {'before': {'sequences': before}, 'after': {'sequences': after}}
