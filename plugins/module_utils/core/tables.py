# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table model: an item of a ``tables`` option as every module and the sync model take it.

An item is ``"schema.table"`` or a dict with ``name`` and the keys its caller allows:

- ``columns`` / ``key_columns``: non-empty lists of column names, each once;
- ``where`` / ``target_where``: a row filter, one SQL expression (``core.row_filter``);
  ``target_where: ''`` means no filter on the target;
- ``target``: another ``schema.table`` on the target side;
- ``replica_identity``: ``full``, ``default`` or ``index:<name>``.

``parse_table_refs(items, allowed)`` checks every item and returns ``(refs, errors)`` with
every problem found, so a module can name all of them in one message. Names are taken
literally (see ``core.identifiers``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier, format_qualified, parse_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.row_filter import (
    RowFilterError, check_row_filter)

KEYS = ('name', 'columns', 'key_columns', 'where', 'target_where', 'target', 'replica_identity')


class TableRef(object):
    """One table of a ``tables`` option (None: the key was not given)."""

    __slots__ = ('schema', 'name', 'columns', 'key_columns', 'where', 'target_where', 'target',
                 'replica_identity')

    def __init__(self, schema, name, columns=None, key_columns=None, where=None,
                 target_where=None, target=None, replica_identity=None):
        self.schema = schema
        self.name = name
        self.columns = columns
        self.key_columns = key_columns
        self.where = where
        self.target_where = target_where
        self.target = target
        self.replica_identity = replica_identity

    @property
    def key(self):
        """``(schema, name)``."""
        return (self.schema, self.name)

    @property
    def shown(self):
        """The name as the options take it back (``format_qualified``)."""
        return format_qualified(self.schema, self.name)

    def __repr__(self):
        return 'TableRef(%s)' % self.shown


def name_list(value, what, table):
    """A non-empty list of distinct column names, or raises ValueError (message names ``what``
    and ``table``)."""
    if not isinstance(value, (list, tuple)) or not value \
            or not all(isinstance(v, str) for v in value):
        raise ValueError('%s: %s must be a non-empty list of column names' % (table, what))
    try:
        names = [check_identifier(v, 'column name') for v in value]
    except NameError_ as e:
        raise ValueError('%s: %s: %s' % (table, what, e))
    twice = sorted(set(n for n in names if names.count(n) > 1))
    if twice:
        raise ValueError('%s: %s lists %s more than once' % (table, what, ', '.join(twice)))
    return names


def row_filter(value, what, table, standard_conforming_strings=True, empty=None):
    """One SQL expression (stripped); ``''`` -> ``empty``. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError('%s: %s must be a string (an SQL expression)' % (table, what))
    value = value.strip()
    if not value:
        return empty
    try:
        return check_row_filter(value, standard_conforming_strings)
    except RowFilterError as e:
        raise ValueError('%s: %s: %s' % (table, what, e))


def replica_identity(value, what='replica_identity', allow_default=True):
    """``'full'`` -> ``('full',)``, ``'default'`` -> ``('default',)``, ``'index:name'`` ->
    ``('index', 'name')``. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError('%s must be a string, got %r' % (what, value))
    if value == 'full':
        return ('full',)
    if value == 'default' and allow_default:
        return ('default',)
    if value.startswith('index:'):
        try:
            return ('index', check_identifier(value[len('index:'):], 'index name in %s' % what))
        except NameError_ as e:
            raise ValueError(str(e))
    raise ValueError('%s must be %s or index:<index name>, got %r'
                     % (what, "'full', 'default'" if allow_default else "'full'", value))


def parse_table_ref(item, allowed, standard_conforming_strings=True):
    """One item -> TableRef; raises ValueError naming the first problem of the item."""
    if isinstance(item, str):
        item = {'name': item}
    if not isinstance(item, dict):
        raise ValueError('a table is a "schema.table" string or a dict with name (and %s), got %r'
                         % (', '.join(k for k in allowed if k != 'name') or 'nothing else', item))
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise ValueError('%s has unknown key(s) %s (allowed: %s)'
                         % (item.get('name', item), ', '.join(unknown), ', '.join(allowed)))
    name = item.get('name')
    if not isinstance(name, str) or not name:
        raise ValueError('%r has no name (schema.table)' % (item,))
    try:
        schema, table = parse_qualified(name)
        target = parse_qualified(item['target']) if item.get('target') is not None else None
    except NameError_ as e:
        raise ValueError(str(e))
    shown = format_qualified(schema, table)
    ref = TableRef(schema, table, target=target)
    if item.get('columns') is not None:
        ref.columns = name_list(item['columns'], 'columns', shown)
    if item.get('key_columns') is not None:
        ref.key_columns = name_list(item['key_columns'], 'key_columns', shown)
    if item.get('where') is not None:
        ref.where = row_filter(item['where'], 'where', shown, standard_conforming_strings)
    if item.get('target_where') is not None:
        ref.target_where = row_filter(item['target_where'], 'target_where', shown,
                                      standard_conforming_strings, empty='')
    if item.get('replica_identity') is not None:
        ref.replica_identity = replica_identity(item['replica_identity'],
                                                'replica_identity of table %s' % shown)
    return ref


def parse_table_refs(items, allowed=('name',), standard_conforming_strings=True):
    """Every item of a ``tables`` option -> ``(refs, errors)``: the items that parse, in order,
    and one message per problem (bad items, a table listed twice)."""
    refs, errors, seen = [], [], set()
    if items is not None and not isinstance(items, (list, tuple)):
        return [], ['tables must be a list, got %r' % (items,)]
    for item in items or ():
        try:
            ref = parse_table_ref(item, allowed, standard_conforming_strings)
        except ValueError as e:
            errors.append(str(e))
            continue
        if ref.key in seen:
            errors.append('%s is listed more than once' % ref.shown)
            continue
        seen.add(ref.key)
        refs.append(ref)
    return refs, errors
