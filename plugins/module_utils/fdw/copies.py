# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_foreign_table_copies: materialized-view local copies of foreign tables.

A copy is ``CREATE MATERIALIZED VIEW <name> AS SELECT <columns> FROM <foreign table>
[WHERE ...]``. The columns are listed explicitly (all columns of the foreign table unless the
task names some), and a fingerprint of the rendered definition is kept in the view's comment:
when it differs (the foreign table gained a column, the task asks for other columns or another
filter) the copy is recreated. A unique index on the key (by default the remote table's primary
key, read through the server) lets ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` refresh it without
blocking readers. Pure: no database, unit-tested offline.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, exact_grantees, render)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import PlanError

COMMENT_PREFIX = 'tablesync.postgresql copy of '
INDEX_PREFIX = 'tablesync_copy_key_'


class CopySpec(object):
    """One desired copy. ``unique_key`` None: the remote primary key; []: no unique index."""

    def __init__(self, name, source, columns=None, where=None, unique_key=None):
        self.name = tuple(name)
        self.source = tuple(source)
        self.columns = None if columns is None else list(columns)
        self.where = where
        self.unique_key = None if unique_key is None else list(unique_key)

    @property
    def label(self):
        return format_qualified(*self.name)


class Relation(object):
    """A relation as the catalog holds it (source foreign table or existing copy)."""

    def __init__(self, exists=False, kind=None, server=None, columns=(), options=None,
                 comment=None, populated=True, unique_indexes=(), schema_exists=True,
                 maintainers=()):
        self.exists = exists
        self.kind = kind
        self.server = server
        self.columns = list(columns)  # [(local name, remote name)]
        self.options = dict(options or {})
        self.comment = comment
        self.populated = populated
        self.unique_indexes = [(n, list(c)) for n, c in unique_indexes]  # [(index, columns)]
        self.schema_exists = schema_exists
        # roles granted MAINTAIN (PostgreSQL 17+) other than the owner
        self.maintainers = sorted(maintainers or ())

    @property
    def column_names(self):
        return [local for local, _remote in self.columns]

    def remote_table(self, schema, name):
        return (self.options.get('schema_name', schema), self.options.get('table_name', name))

    def local_names(self, remote_columns):
        """Remote column names -> local ones (None when one is not a column here)."""
        by_remote = dict((remote, local) for local, remote in self.columns)
        names = [by_remote.get(c) for c in remote_columns]
        return None if None in names else names


class CopiesPlan(object):
    def __init__(self):
        self.statements = []
        self.created = []
        self.recreated = []
        self.dropped = []
        self.refreshed = []
        self.refresh_sql = []
        self.warnings = []
        self.copies = []

    def result(self):
        return {'created': self.created, 'recreated': self.recreated, 'dropped': self.dropped,
                'refreshed': self.refreshed, 'refresh_sql': self.refresh_sql,
                'copies': self.copies}


def ident(pair):
    return sql.Identifier(*pair)


def index_name(spec):
    digest = hashlib.sha256(render(Statement(ident(spec.name))).encode('utf-8')).hexdigest()
    return INDEX_PREFIX + digest[:16]


def definition(spec, source):
    """The copy's SELECT, columns listed explicitly.

    A source that does not exist yet (check mode, imported by an earlier task) is shown as
    ``SELECT *`` (or the listed columns), as it would be copied.
    """
    if not source.exists and spec.columns is None:
        return _with_where(sql.SQL('SELECT * FROM {}').format(ident(spec.source)), spec), []
    columns = spec.columns if spec.columns is not None else source.column_names
    missing = [c for c in columns if c not in source.column_names]
    if source.exists and missing:
        raise PlanError('copy %s: foreign table %s has no column(s) %s'
                        % (spec.label, format_qualified(*spec.source), ', '.join(missing)))
    query = sql.SQL('SELECT {} FROM {}').format(
        sql.SQL(', ').join(sql.Identifier(c) for c in columns), ident(spec.source))
    return _with_where(query, spec), columns


def _with_where(query, spec):
    if spec.where:
        return sql.SQL('{} WHERE ({})').format(query, sql.SQL(spec.where))
    return query


def fingerprint_comment(spec, query):
    digest = hashlib.sha256(render(Statement(query)).encode('utf-8')).hexdigest()
    return '%s%s (definition %s)' % (COMMENT_PREFIX, format_qualified(*spec.source),
                                     digest[:16])


def desired_key(spec, source, columns, remote_keys, plan):
    """Key columns of the unique index ([] for none)."""
    if spec.unique_key is not None:
        absent = [c for c in spec.unique_key if c not in columns]
        if absent:
            raise PlanError('copy %s: unique_key column(s) %s are not in the copy'
                            % (spec.label, ', '.join(absent)))
        return spec.unique_key
    remote = remote_keys.get(source.remote_table(*spec.source))
    if not remote:
        plan.warnings.append('copy %s: the remote table has no primary key (or it could not be '
                             'read); it is refreshed without CONCURRENTLY, blocking readers '
                             'while it runs (set unique_key to allow it)' % spec.label)
        return []
    local = source.local_names(remote)
    if local is None or any(c not in columns for c in local):
        plan.warnings.append('copy %s: the primary key of the remote table is not among the '
                             'copied columns; it is refreshed without CONCURRENTLY' % spec.label)
        return []
    return local


def index_statements(spec, copy, key, fresh):
    """Create/drop the collection's unique index so that ``key`` is covered.

    Returns (statements, whether a usable unique index exists afterwards).
    """
    ours = index_name(spec)
    remaining = [] if fresh else list(copy.unique_indexes)
    statements = []
    own = dict(remaining).get(ours)
    if own is not None and sorted(own) != sorted(key):
        statements.append(Statement(sql.SQL('DROP INDEX {}').format(
            sql.Identifier(spec.name[0], ours))))
        remaining = [(n, c) for n, c in remaining if n != ours]
    covered = any(sorted(columns) == sorted(key) for _name, columns in remaining)
    if key and not covered:
        statements.append(Statement(sql.SQL('CREATE UNIQUE INDEX {} ON {} ({})').format(
            sql.Identifier(ours), ident(spec.name),
            sql.SQL(', ').join(sql.Identifier(c) for c in key))))
    return statements, bool(key) or bool(remaining)


def create_statements(spec, query, comment):
    return [
        Statement(sql.SQL('CREATE MATERIALIZED VIEW {} AS {} WITH DATA').format(
            ident(spec.name), query)),
        Statement(sql.SQL('COMMENT ON MATERIALIZED VIEW {} IS %s').format(ident(spec.name)),
                  (comment,)),
    ]


def refresh_statement(spec, concurrently):
    keyword = 'REFRESH MATERIALIZED VIEW CONCURRENTLY {}' if concurrently \
        else 'REFRESH MATERIALIZED VIEW {}'
    return Statement(sql.SQL(keyword).format(ident(spec.name)))


def drop_statement(spec, cascade):
    query = sql.SQL('DROP MATERIALIZED VIEW {}').format(ident(spec.name))
    return Statement(sql.SQL('{} CASCADE').format(query) if cascade else query)


def check_source(spec, source, check_mode, plan):
    if not source.exists and check_mode:
        plan.warnings.append('copy %s: source %s does not exist yet; shown as it would be '
                             'created once it exists' % (spec.label, format_qualified(*spec.source)))
    elif not source.exists:
        raise PlanError('copy %s: source %s does not exist (import it with '
                        'tablesync.postgresql.pg_foreign_tables first)'
                        % (spec.label, format_qualified(*spec.source)))


def is_our_copy(copy):
    return copy.exists and copy.kind == 'm' and (copy.comment or '').startswith(COMMENT_PREFIX)


def check_copy(spec, copy):
    if copy.exists and copy.kind != 'm':
        raise PlanError('copy %s: a relation that is not a materialized view has that name'
                        % spec.label)
    if copy.exists and not (copy.comment or '').startswith(COMMENT_PREFIX):
        raise PlanError('copy %s: a materialized view not made by this module has that name; '
                        'drop or rename it first' % spec.label)


def maintain_statements(spec, copy, fresh, maintain_role):
    """MAINTAIN (PostgreSQL 17+: REFRESH without owning the view) for exactly ``maintain_role``
    ('' for none; None leaves the grants alone). A view created again has lost its grants."""
    if maintain_role is None:
        return []
    return exact_grantees('MAINTAIN', ident(spec.name), [maintain_role] if maintain_role else [],
                          () if fresh else copy.maintainers)


def plan_copy(spec, source, copy, remote_keys, cascade, refresh, plan, schemas_created,
              check_mode=False, maintain_role=None):
    check_source(spec, source, check_mode, plan)
    check_copy(spec, copy)
    query, columns = definition(spec, source)
    comment = fingerprint_comment(spec, query)
    key = desired_key(spec, source, columns, remote_keys, plan) if source.exists \
        else list(spec.unique_key or ())
    fresh = not copy.exists or copy.comment != comment
    if not copy.schema_exists and spec.name[0] not in schemas_created:
        plan.statements.append(Statement(sql.SQL('CREATE SCHEMA {}').format(
            sql.Identifier(spec.name[0]))))
        schemas_created.add(spec.name[0])
    if copy.exists and fresh:
        plan.statements.append(drop_statement(spec, cascade))
        plan.recreated.append(spec.label)
    elif not copy.exists:
        plan.created.append(spec.label)
    if fresh:
        plan.statements.extend(create_statements(spec, query, comment))
    statements, concurrently = index_statements(spec, copy, key, fresh)
    plan.statements.extend(statements)
    plan.statements.extend(maintain_statements(spec, copy, fresh, maintain_role))
    if refresh and not fresh:
        plan.statements.append(refresh_statement(spec, concurrently and copy.populated))
        plan.refreshed.append(spec.label)
    plan.refresh_sql.append(render(refresh_statement(spec, concurrently)))
    plan.copies.append({'name': spec.label, 'source': format_qualified(*spec.source),
                        'columns': columns, 'unique_key': key, 'concurrently': concurrently})


def plan_copies(specs, sources, copies, remote_keys, state='present', cascade=False,
                refresh=False, check_mode=False, maintain_role=None, version_num=170000,
                maintain_usage=()):
    """Statements for the desired copies.

    ``sources``/``copies``: (schema, name) -> Relation; ``remote_keys``: (remote schema, remote
    table) -> primary key column names (remote names); ``maintain_role``: the login that may
    refresh them without owning them (MAINTAIN, PostgreSQL 17 or later), which also needs
    USAGE on their schemas (``maintain_usage``: the schemas where it has it; never revoked:
    USAGE alone opens no table).
    """
    if maintain_role and version_num < 170000:
        raise PlanError('maintain_role needs PostgreSQL 17 or later (the MAINTAIN privilege); '
                        'before 17 only the owner of a materialized view may refresh it')
    plan = CopiesPlan()
    names = [s.name for s in specs]
    duplicates = sorted(set(format_qualified(*n) for n in names if names.count(n) > 1))
    if duplicates:
        raise PlanError('copies listed more than once: %s' % ', '.join(duplicates))
    if state == 'absent':
        for spec in specs:
            if is_our_copy(copies[spec.name]):
                plan.statements.append(drop_statement(spec, cascade))
                plan.dropped.append(spec.label)
        return plan
    schemas_created = set()
    for spec in specs:
        plan_copy(spec, sources[spec.source], copies[spec.name], remote_keys, cascade, refresh,
                  plan, schemas_created, check_mode, maintain_role)
    if maintain_role:
        for schema in sorted(set(spec.name[0] for spec in specs) - set(maintain_usage)):
            plan.statements.append(Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(
                sql.Identifier(schema), sql.Identifier(maintain_role))))
    return plan
