# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table definitions as the catalogs describe them, and the SQL pieces built from them.

Shared by the planners of pg_target_tables: ``target_tables`` (create what is missing) and
``column_changes`` (follow the source's column changes). Only SQL text read from a catalog
(``CatalogSQL``) is ever inserted with ``sql.SQL``; names are always ``sql.Identifier``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

TABLE_KINDS = {'r': 'table', 'p': 'partitioned table'}
OTHER_KINDS = {
    'v': 'view', 'm': 'materialized view', 'f': 'foreign table', 'S': 'sequence',
    'i': 'index', 'I': 'partitioned index', 'c': 'composite type', 't': 'TOAST table',
}

# What format_type() prints: identifiers (bare or double-quoted), dots, type modifiers made of
# digits, the array suffix and spaces ("timestamp(3) with time zone", "public.mood[]").
_TYPE_TOKEN = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\(\d+(?:,\d+)*\)|\[\]|\.| )'
_TYPE_NAME_RE = re.compile(r'^%s+$' % _TYPE_TOKEN)


class CatalogSQL(str):
    """SQL text produced by the server's catalog functions (format_type, pg_get_expr).

    The planner inserts SQL text into statements only when it carries this type, i.e. when
    ``table_from_catalog`` read (and, for type names, validated) it from a catalog row.
    """


def catalog_type_name(text):
    """Validate a format_type() result and mark it as catalog SQL."""
    if not isinstance(text, str) or not _TYPE_NAME_RE.match(text):
        raise ValueError('unexpected type name %r from the catalog' % (text,))
    return CatalogSQL(text)


def catalog_sql(text):
    if not isinstance(text, CatalogSQL):
        raise TypeError('refusing to insert SQL text %r that was not read from a catalog' % (text,))
    return sql.SQL(text)


class Column(object):
    """A column as created on the target. Defaults and identity are not copied: the target
    receives every value from the source. ``has_default`` and ``missing_value`` (the text of
    ``pg_attribute.attmissingval``, the value rows that existed before an ADD COLUMN ... DEFAULT
    got) are read from the source for following added columns (``column_changes``)."""

    __slots__ = ('name', 'type', 'not_null', 'collation', 'generated', 'has_default', 'missing_value',
                 'attnum', 'virtual')

    def __init__(self, name, type_, not_null=False, collation=None, generated=None,
                 has_default=False, missing_value=None, attnum=None, virtual=False):
        self.virtual = virtual       # a virtual generated column (PostgreSQL 18+), else stored
        self.attnum = attnum         # pg_attribute.attnum (tells a rename from a drop and an add)
        self.name = name
        self.type = type_            # CatalogSQL from format_type()
        self.not_null = not_null
        self.collation = collation   # (schema, name) when not the type's default, else None
        self.generated = generated   # CatalogSQL expression of a stored generated column
        self.has_default = has_default
        self.missing_value = missing_value

    def signature(self):
        """What must match between source and target: the type and the generation."""
        if self.generated is None:
            return str(self.type)
        return '%s GENERATED ALWAYS AS (%s) %s' % (self.type, self.generated,
                                                   'VIRTUAL' if self.virtual else 'STORED')


class Index(object):
    """A secondary index as the catalog describes it.

    ``method`` is the part of ``pg_get_indexdef()`` after ``USING`` (access method, key columns
    with their operator classes and ordering, INCLUDE, WITH, WHERE), read and checked by the
    catalog query; ``columns`` names every table column the index needs (keys, INCLUDE,
    expressions and predicate); ``immediate`` is false for the index of a DEFERRABLE unique
    constraint; ``valid`` is false for an index a failed concurrent build left behind.
    """

    __slots__ = ('name', 'unique', 'method', 'columns', 'immediate', 'valid')

    def __init__(self, name, unique=False, method=None, columns=(), immediate=True, valid=True):
        self.name = name
        self.unique = unique
        self.method = method
        self.columns = list(columns)
        self.immediate = immediate
        self.valid = valid


class TableDef(object):
    __slots__ = ('schema', 'name', 'kind', 'columns', 'primary_key', 'replica_identity',
                 'replica_index', 'indexes', 'dropped')

    def __init__(self, schema, name, kind, columns=(), primary_key=None, replica_identity='d',
                 replica_index=None, indexes=(), dropped=()):
        self.dropped = list(dropped)          # attnums of dropped columns
        self.indexes = list(indexes)          # secondary indexes (not the primary key's)
        self.schema = schema
        self.name = name
        self.kind = kind
        self.columns = list(columns)
        self.primary_key = primary_key          # (constraint name, [columns]) or None
        self.replica_identity = replica_identity  # pg_class.relreplident
        self.replica_index = replica_index      # (index name, [columns]) or None

    @property
    def key(self):
        return (self.schema, self.name)

    @property
    def display(self):
        return format_qualified(self.schema, self.name)

    @property
    def is_table(self):
        return self.kind in TABLE_KINDS

    def column_names(self):
        return [c.name for c in self.columns]

    def subset(self, names):
        """Copy with only the named columns (in the table's column order)."""
        wanted = set(names)
        return TableDef(self.schema, self.name, self.kind,
                        [c for c in self.columns if c.name in wanted], self.primary_key,
                        self.replica_identity, self.replica_index, self.indexes, self.dropped)

    def stored_as_plain(self):
        """Copy whose stored generated columns are plain columns: their values arrive from the
        publisher (``publish_generated_columns = stored``, PostgreSQL 18); virtual ones stay."""
        columns = [c if c.generated is None or c.virtual else
                   Column(c.name, c.type, c.not_null, c.collation, None, False, None, c.attnum)
                   for c in self.columns]
        return TableDef(self.schema, self.name, self.kind, columns, self.primary_key,
                        self.replica_identity, self.replica_index, self.indexes, self.dropped)


def column_definition(column, extra=None):
    """The column as CREATE TABLE lists it; ``extra``: a peer's DEFAULT or identity clause."""
    parts = [sql.Identifier(column.name), catalog_sql(column.type)]
    if column.collation:
        parts.append(sql.SQL('COLLATE {}').format(sql.Identifier(*column.collation)))
    if extra is not None:
        parts.append(extra)
    if column.generated is not None:
        parts.append(sql.SQL('GENERATED ALWAYS AS ({}) {}').format(
            catalog_sql(column.generated), sql.SQL('VIRTUAL' if column.virtual else 'STORED')))
    if column.not_null:
        parts.append(sql.SQL('NOT NULL'))
    return sql.SQL(' ').join(parts)


def identifier_list(names):
    return sql.SQL(', ').join(sql.Identifier(n) for n in names)
