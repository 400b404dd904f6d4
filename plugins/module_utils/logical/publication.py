# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publications as data: parsing of the module options, validation against catalog facts and
the pure planner ("desired vs current -> list of Statement") used by ``pg_publication``.

Nothing here talks to a database; the module reads the catalog and passes plain dicts in.

A publication *state* is a dict::

    {'name': str,
     'owner': str or None,             # None: not managed (creator on CREATE)
     'all_tables': bool,
     'tables': {(schema, table): {'columns': tuple or None, 'where': str or None}},
     'schemas': tuple of str,          # sorted
     'publish': tuple of str,          # subset of PUBLISH_OPS, in that order
     'publish_via_partition_root': bool or None,   # None: server default / not supported
     'publish_generated_columns': 'none', 'stored' or None,   # PostgreSQL 18+
     'comment': str or None}

Column lists are sets in PostgreSQL (``pg_publication_rel.prattrs`` is sorted by attnum): they are
compared as sets and shown in table column order. Row filters are compared as text; the module
first replaces a desired filter by the catalog's text when PostgreSQL says both are the same
expression (see ``adopt_equivalent_filters``), so ``a > 5`` and ``(a > 5)`` compare equal.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier, format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import (
    PG10, PG11, PG13, PG15, PG18, requirement_message)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import (
    parse_table_refs, replica_identity)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

PUBLISH_OPS = ('insert', 'update', 'delete', 'truncate')

# The one table of version gates: feature -> (minimum server_version_num, what the user asked for).
FEATURE_GATES = {
    'publication': (PG10, 'Logical replication publications'),
    'publish_truncate': (PG11, 'Publishing TRUNCATE (publish: truncate)'),
    'publish_via_partition_root': (PG13, 'The publish_via_partition_root option'),
    'row_filter': (PG15, 'Row filters (tables[].where)'),
    'column_list': (PG15, 'Column lists (tables[].columns)'),
    'schemas': (PG15, 'Publishing schemas (schemas: FOR TABLES IN SCHEMA)'),
    'publish_generated_columns': (PG18, 'The publish_generated_columns option'),
}

TABLE_KEYS = ('name', 'columns', 'where', 'replica_identity')

# pg_publication.pubgencols (PostgreSQL 18) -> the option's value, and the value as SQL
GENCOLS = {'n': 'none', 's': 'stored'}
GENCOLS_SQL = {'none': 'none', 'stored': 'stored'}

# relreplident letters as PostgreSQL names them
REPLIDENT_NAMES = {'d': 'DEFAULT', 'n': 'NOTHING', 'f': 'FULL', 'i': 'USING INDEX'}


class PublicationError(TablesyncError):
    """Invalid input or a state PostgreSQL would refuse; the message is shown to the user."""


# --------------------------------------------------------------------------------------------
# Version gates
# --------------------------------------------------------------------------------------------

def features_used(state):
    """Gate keys (see FEATURE_GATES) a desired state needs, in a stable order."""
    used = ['publication']
    if 'truncate' in (state.get('publish') or ()):
        used.append('publish_truncate')
    if state.get('publish_via_partition_root') is not None:
        used.append('publish_via_partition_root')
    tables = (state.get('tables') or {}).values()
    if any(t.get('where') for t in tables):
        used.append('row_filter')
    if any(t.get('columns') for t in tables):
        used.append('column_list')
    if state.get('schemas'):
        used.append('schemas')
    if state.get('publish_generated_columns') not in (None, 'none'):
        used.append('publish_generated_columns')
    return used


def version_gates(state):
    """``[(minimum_version_num, feature description)]`` for every feature the state uses."""
    return [FEATURE_GATES[key] for key in features_used(state)]


def version_problems(state, server_version):
    """Messages (same wording as connection.require_version) for features the server lacks."""
    return [requirement_message(feature, minimum, server_version)
            for minimum, feature in version_gates(state) if server_version < minimum]


# --------------------------------------------------------------------------------------------
# Module options -> desired state
# --------------------------------------------------------------------------------------------

def _identifier(value, what):
    if not isinstance(value, str):
        raise PublicationError('%s must be a string, got %r' % (what, value))
    try:
        return check_identifier(value, what)
    except NameError_ as e:
        raise PublicationError(str(e))


def parse_replica_identity(value, allow_default=False, where='replica_identity'):
    """``'full'`` -> ``('full',)``, ``'index:name'`` -> ``('index', 'name')``, ``None`` -> None."""
    if value is None:
        return None
    try:
        return replica_identity(value, where, allow_default)
    except ValueError as e:
        raise PublicationError(str(e))


def parse_tables(items, standard_conforming_strings=True):
    """``tables`` option -> ordered dict (schema, table) -> spec (columns, where,
    replica_identity), parsed by ``core.tables`` (every problem named at once). An empty
    column list means all columns."""
    if items is None:
        return None
    items = [dict(item, columns=None) if isinstance(item, dict) and item.get('columns') == [] else item
             for item in items]
    refs, errors = parse_table_refs(items, TABLE_KEYS, standard_conforming_strings)
    if errors:
        raise PublicationError('; '.join(errors))
    return dict((ref.key, {'columns': tuple(ref.columns) if ref.columns else None,
                           'where': ref.where, 'replica_identity': ref.replica_identity})
                for ref in refs)


def canonical_publish(ops):
    return tuple(op for op in PUBLISH_OPS if op in set(ops or ()))


def desired_from_params(params, standard_conforming_strings=True):
    """Module parameters -> desired dict (None = option not managed)."""
    desired = {
        'state': params.get('state') or 'present',
        'name': _identifier(params['name'], 'publication name'),
        'cascade': bool(params.get('cascade')),
    }
    if desired['state'] == 'absent':
        return desired
    tables = parse_tables(params.get('tables'), standard_conforming_strings)
    schemas = params.get('schemas')
    if schemas is not None:
        schemas = tuple(sorted(set(_identifier(s, 'schema name') for s in schemas)))
    all_tables = params.get('all_tables')
    if all_tables and (tables or schemas):
        raise PublicationError('all_tables: true cannot be combined with tables or schemas')
    owner = params.get('owner')
    desired.update({
        'all_tables': all_tables,
        'tables': tables,
        'schemas': schemas,
        'publish': canonical_publish(params.get('publish', PUBLISH_OPS)),
        'publish_via_partition_root': params.get('publish_via_partition_root'),
        'publish_generated_columns': params.get('publish_generated_columns'),
        'owner': _identifier(owner, 'owner') if owner is not None else None,
        'comment': params.get('comment'),
        'replica_identity': parse_replica_identity(params.get('replica_identity')),
        'check_replica_identity': params.get('check_replica_identity', True),
    })
    return desired


def _table_state(spec):
    return {'columns': spec.get('columns'), 'where': spec.get('where')}


def merge_desired(desired, current):
    """The complete state the publication will have: desired options over the current state.

    Options left unset keep their current value (on creation: empty / PostgreSQL's default).
    ``all_tables: false`` or a ``tables``/``schemas`` list turns a FOR ALL TABLES publication
    into a list publication (the planner drops and recreates it). ``comment: ''`` removes the
    comment.
    """
    current = current or {}
    if desired.get('all_tables'):
        all_tables = True
    elif desired.get('all_tables') is False or desired.get('tables') is not None \
            or desired.get('schemas') is not None:
        all_tables = False
    else:
        all_tables = bool(current.get('all_tables'))

    def listed(key, empty):
        if all_tables:
            return empty
        if desired.get(key) is not None:
            return desired[key]
        if current.get('all_tables'):
            return empty
        return current.get(key, empty)

    tables = listed('tables', {})
    comment = desired.get('comment')
    if comment is None:
        comment = current.get('comment')
    pubviaroot = desired.get('publish_via_partition_root')
    if pubviaroot is None:
        pubviaroot = current.get('publish_via_partition_root')
    gencols = desired.get('publish_generated_columns')
    if gencols is None:
        gencols = current.get('publish_generated_columns')
    return {
        'name': desired['name'],
        'owner': desired.get('owner') or current.get('owner'),
        'all_tables': all_tables,
        'tables': dict((k, _table_state(v)) for k, v in tables.items()),
        'schemas': tuple(sorted(listed('schemas', ()))),
        'publish': canonical_publish(desired.get('publish', PUBLISH_OPS)),
        'publish_via_partition_root': pubviaroot,
        'publish_generated_columns': gencols,
        'comment': comment or None,
    }


def state_from_catalog(row):
    """A catalog row (dict, see the module's read query) -> publication state, or None."""
    if not row or not row.get('exists'):
        return None
    tables = {}
    for t in row.get('tables') or ():
        tables[(t['schema'], t['name'])] = {
            'columns': tuple(t['columns']) if t.get('columns') else None,
            'where': t.get('where'),
        }
    publish = [op for op in PUBLISH_OPS if row.get('pub' + op)]
    return {
        'name': row['name'],
        'owner': row.get('owner'),
        'all_tables': bool(row.get('puballtables')),
        'tables': tables,
        'schemas': tuple(sorted(row.get('schemas') or ())),
        'publish': tuple(publish),
        'publish_via_partition_root': row.get('pubviaroot'),
        'publish_generated_columns': GENCOLS.get(row.get('pubgencols')),
        'comment': row.get('comment'),
    }


def public_state(state, server_version=None, creator=None):
    """The ``publication`` return value / diff side: plain, JSON-friendly, sorted."""
    if not state:
        return {}
    pubviaroot = state.get('publish_via_partition_root')
    if pubviaroot is None and server_version and server_version >= PG13:
        pubviaroot = False
    return {
        'name': state['name'],
        'owner': state.get('owner') or creator,
        'all_tables': state['all_tables'],
        'tables': [{'name': format_qualified(*key),
                    'columns': list(spec['columns']) if spec.get('columns') else None,
                    'where': spec.get('where')}
                   for key, spec in sorted(state['tables'].items())],
        'schemas': list(state['schemas']),
        'publish': list(state['publish']),
        'publish_via_partition_root': pubviaroot,
        'publish_generated_columns': state.get('publish_generated_columns'),
        'comment': state.get('comment'),
    }


def adopt_equivalent_filters(state, current, same_filter):
    """Use the catalog's text for desired row filters PostgreSQL considers the same.

    ``same_filter(key, desired_text, current_text)`` is asked only when both exist and the texts
    differ. Returns a new state (the input is not modified).
    """
    tables = {}
    current_tables = (current or {}).get('tables') or {}
    for key, spec in state['tables'].items():
        spec = dict(spec)
        had = current_tables.get(key, {}).get('where')
        if spec.get('where') and had and spec['where'] != had and same_filter(key, spec['where'], had):
            spec['where'] = had
        tables[key] = spec
    result = dict(state)
    result['tables'] = tables
    return result


# --------------------------------------------------------------------------------------------
# Validation against catalog facts (``resolved``: the module's resolve query, as dicts)
# --------------------------------------------------------------------------------------------

def _qualified(pair):
    return format_qualified(pair[0], pair[1])


def _listed_tables(resolved, predicate):
    return [_qualified((t['schema'], t['name'])) for t in resolved.get('tables') or () if predicate(t)]


def missing_objects_message(resolved):
    """One message naming every missing/unpublishable table and missing schema, or None."""
    checks = (
        ('tables that do not exist', lambda t: t.get('kind') is None),
        ('relations that are not tables (views, sequences, foreign tables... cannot be published)',
         lambda t: t.get('kind') not in (None, 'r', 'p')),
        ('unlogged or temporary tables (cannot be published)',
         lambda t: t.get('kind') in ('r', 'p') and t.get('persistence') != 'p'),
    )
    problems = []
    for what, predicate in checks:
        names = _listed_tables(resolved, predicate)
        if names:
            problems.append('%s: %s' % (what, ', '.join(names)))
    schemas = resolved.get('missing_schemas') or ()
    if schemas:
        problems.append('schemas that do not exist: %s' % ', '.join(schemas))
    if problems:
        return 'Cannot publish: %s.' % '; '.join(problems)
    return None


def order_columns(state, resolved):
    """Put column lists in table column order; fail naming every unknown column per table."""
    known = dict(((t['schema'], t['name']), t.get('columns') or []) for t in resolved.get('tables') or ())
    problems = []
    tables = {}
    for key, spec in state['tables'].items():
        spec = dict(spec)
        if spec.get('columns'):
            order = known.get(key, [])
            unknown = [c for c in spec['columns'] if c not in order]
            if unknown:
                problems.append('%s has no column %s' % (_qualified(key), ', '.join(unknown)))
            spec['columns'] = tuple(c for c in order if c in spec['columns'])
        tables[key] = spec
    if problems:
        raise PublicationError('Unknown columns in column lists: %s.' % '; '.join(problems))
    result = dict(state)
    result['tables'] = tables
    return result


def structure_problems(state, resolved, table_identity):
    """PostgreSQL's rules on combining column lists, row filters, schemas and partitions."""
    kinds = dict(((t['schema'], t['name']), t.get('kind')) for t in resolved.get('tables') or ())
    problems = []
    with_columns = [_qualified(k) for k, s in sorted(state['tables'].items()) if s.get('columns')]
    if with_columns and state['schemas']:
        problems.append('column lists cannot be used in a publication that also publishes schemas '
                        '(tables with a column list: %s)' % ', '.join(with_columns))
    if not state.get('publish_via_partition_root'):
        partitioned = [_qualified(k) for k, s in sorted(state['tables'].items())
                       if kinds.get(k) == 'p' and (s.get('columns') or s.get('where'))]
        if partitioned:
            problems.append('a column list or row filter on a partitioned table needs '
                            'publish_via_partition_root: true (tables: %s)' % ', '.join(partitioned))
    partitioned_ri = [_qualified(k) for k, ri in sorted(table_identity.items()) if kinds.get(k) == 'p']
    if partitioned_ri:
        problems.append('replica_identity cannot be set on a partitioned table, PostgreSQL uses '
                        'the identity of each partition: list the partitions or use the '
                        'top-level replica_identity option (tables: %s)' % ', '.join(partitioned_ri))
    if problems:
        raise PublicationError('Invalid publication: %s.' % '; '.join(problems))


def _leaf_key(leaf):
    return (leaf['schema'], leaf['name'])


def merge_leaves(resolved):
    """Published leaf tables, deduplicated: key -> leaf dict with ``of`` = set of the listed
    tables (schema, table) it is published for (itself, or its partitioned ancestor)."""
    leaves = {}
    for leaf in resolved.get('leaves') or ():
        key = _leaf_key(leaf)
        entry = leaves.setdefault(key, dict(leaf, of=set()))
        if leaf.get('listed'):
            entry['of'].add(tuple(leaf['listed']))
    return leaves


def current_identity(leaf):
    """``('full', None)``, ``('key', [columns])`` or ``('none', reason)`` for a leaf table."""
    letter = leaf.get('replident')
    if letter == 'f':
        return ('full', None)
    if letter == 'd' and leaf.get('pk'):
        return ('key', list(leaf['pk']))
    if letter == 'i' and leaf.get('ident_key'):
        return ('key', list(leaf['ident_key']))
    if letter == 'd':
        return ('none', 'no primary key')
    if letter == 'i':
        return ('none', 'its replica identity index is gone')
    return ('none', 'REPLICA IDENTITY NOTHING')


def _identity_after(leaf, wanted):
    """Identity a leaf will have after ``wanted`` (a parsed replica_identity) is applied."""
    if wanted[0] == 'full':
        return ('full', None)
    if wanted[0] == 'default':
        return ('key', list(leaf['pk'])) if leaf.get('pk') else ('none', 'no primary key')
    return ('key', list((leaf.get('unique_indexes') or {})[wanted[1]]))


def _already(leaf, wanted):
    letter = leaf.get('replident')
    if wanted[0] == 'full':
        return letter == 'f'
    if wanted[0] == 'default':
        return letter == 'd'
    return letter == 'i' and leaf.get('ident_index') == wanted[1]


def publishes_updates(state):
    """UPDATE or DELETE is published: the tables need a replica identity."""
    return bool(set(state['publish']) & set(('update', 'delete')))


def table_identities(desired):
    """(schema, table) -> parsed replica_identity, for the tables items that set one."""
    return dict((key, spec['replica_identity']) for key, spec in (desired.get('tables') or {}).items()
                if spec.get('replica_identity'))


def needs_identity_facts(state, desired, per_table):
    """Whether replica identities must be read (to check them or to change them)."""
    return bool(per_table or desired.get('replica_identity')
                or (desired.get('check_replica_identity') and publishes_updates(state)))


def plan_identity(state, resolved, top_level, per_table, check):
    """Decide replica identity changes and refuse what PostgreSQL would refuse at UPDATE/DELETE.

    ``top_level``: parsed ``replica_identity`` option, applied to published leaf tables without
    a usable identity (only when update or delete is published). ``per_table``: (schema, table)
    -> parsed replica_identity of that listed table, always applied. ``check``: refuse leaves
    without identity, and column lists not covering the identity (update/delete published).

    Returns ``(fixes, identity)``: fixes is a list of ``(schema, table, wanted)`` in table order,
    identity maps every leaf to its identity after the fixes (see ``current_identity``).
    """
    leaves = merge_leaves(resolved)
    updates = publishes_updates(state)
    fixes = []
    identity = {}
    bad_index = []
    for key in sorted(leaves):
        leaf = leaves[key]
        wanted = per_table.get(key)
        if wanted is None and top_level and updates and current_identity(leaf)[0] == 'none':
            wanted = top_level
        if wanted and wanted[0] == 'index' and wanted[1] not in (leaf.get('unique_indexes') or {}):
            bad_index.append('%s (index %s)' % (_qualified(key), wanted[1]))
            continue
        if wanted and not _already(leaf, wanted):
            fixes.append((key[0], key[1], wanted))
            identity[key] = _identity_after(leaf, wanted)
        else:
            identity[key] = current_identity(leaf)
    if bad_index:
        raise PublicationError(
            'Cannot use these indexes as replica identity (an index of the table itself that is '
            'unique, not partial, not deferrable, on NOT NULL plain columns): %s.'
            % ', '.join(bad_index))
    if check and updates:
        _refuse(_missing_identity(identity) + _bad_column_lists(state, leaves, identity))
    return fixes, identity


def _refuse(problems):
    if problems:
        raise PublicationError(
            'With update or delete published, PostgreSQL accepts this publication but then '
            'refuses every UPDATE and DELETE on these tables: %s. Add a primary key, set '
            'replica_identity (full or index:<name>), fix the column list, leave update and '
            'delete out of publish, or set check_replica_identity: false.' % '; '.join(problems))


def _missing_identity(identity):
    lacking = ['%s (%s)' % (_qualified(k), v[1]) for k, v in sorted(identity.items()) if v[0] == 'none']
    if lacking:
        return ['no replica identity: %s' % ', '.join(lacking)]
    return []


def leaves_of(key, leaves):
    """Leaf tables published for the listed table ``key`` (itself, or its partitions)."""
    return sorted(k for k, leaf in leaves.items() if key in leaf['of'])


def _bad_column_lists(state, leaves, identity):
    full, lacking = [], []
    for key, spec in sorted(state['tables'].items()):
        if not spec.get('columns'):
            continue
        for leaf in leaves_of(key, leaves):
            kind, cols = identity[leaf]
            label = _qualified(key)
            if leaf != key:
                label += ' (partition %s)' % _qualified(leaf)
            if kind == 'full':
                full.append(label)
            elif kind == 'key':
                missing = [c for c in cols if c not in spec['columns']]
                if missing:
                    lacking.append('%s lacks %s' % (label, ', '.join(missing)))
    problems = []
    if lacking:
        problems.append('column list without every replica identity column: %s' % ', '.join(lacking))
    if full:
        problems.append('column list on a table with REPLICA IDENTITY FULL (which allows none): %s'
                        % ', '.join(full))
    return problems


def filter_key_columns(state, resolved, identity, check):
    """(schema, table) -> columns a row filter may use, for filtered tables that are restricted.

    A filter may only reference replica identity columns when update or delete is published
    (all columns with REPLICA IDENTITY FULL). For a partitioned table the identity of every
    partition counts. Tables without a restriction are left out.
    """
    if not check or not publishes_updates(state):
        return {}
    leaves = merge_leaves(resolved)
    allowed = {}
    for key, spec in sorted(state['tables'].items()):
        if not spec.get('where'):
            continue
        keysets = [identity[leaf][1] for leaf in leaves_of(key, leaves) if identity[leaf][0] == 'key']
        if keysets:
            allowed[key] = [c for c in keysets[0] if all(c in ks for ks in keysets[1:])]
    return allowed


# --------------------------------------------------------------------------------------------
# The planner
# --------------------------------------------------------------------------------------------

def _pub(state):
    return sql.Identifier(state['name'])


def _table_ref(key):
    return sql.SQL('ONLY {}').format(sql.Identifier(key[0], key[1]))


def _table_item(key, spec):
    """``ONLY "s"."t" ("a", "b") WHERE (filter)``: the filter is user SQL, kept verbatim."""
    parts = [_table_ref(key)]
    if spec.get('columns'):
        parts.append(sql.SQL('({})').format(sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns'])))
    if spec.get('where'):
        parts.append(sql.SQL('WHERE ({})').format(sql.SQL(spec['where'])))
    return sql.SQL(' ').join(parts)


def _tables_clause(items):
    return sql.SQL('TABLE {}').format(sql.SQL(', ').join(_table_item(k, s) for k, s in items))


def _schemas_clause(schemas):
    return sql.SQL('TABLES IN SCHEMA {}').format(sql.SQL(', ').join(sql.Identifier(s) for s in schemas))


def _publish_value(publish):
    return sql.Literal(', '.join(publish))


def _with_options(state):
    """WITH (...) options that differ from PostgreSQL's defaults, for CREATE PUBLICATION."""
    options = []
    if tuple(state['publish']) != PUBLISH_OPS:
        options.append(sql.SQL('publish = {}').format(_publish_value(state['publish'])))
    if state.get('publish_via_partition_root'):
        options.append(sql.SQL('publish_via_partition_root = true'))
    if state.get('publish_generated_columns') == 'stored':
        options.append(sql.SQL('publish_generated_columns = stored'))
    return options


def plan_create(state):
    """CREATE PUBLICATION with its objects and options, then owner and comment."""
    query = [sql.SQL('CREATE PUBLICATION {}').format(_pub(state))]
    if state['all_tables']:
        query.append(sql.SQL('FOR ALL TABLES'))
    else:
        objects = []
        if state['tables']:
            objects.append(_tables_clause(sorted(state['tables'].items())))
        if state['schemas']:
            objects.append(_schemas_clause(state['schemas']))
        if objects:
            query.append(sql.SQL('FOR {}').format(sql.SQL(', ').join(objects)))
    options = _with_options(state)
    if options:
        query.append(sql.SQL('WITH ({})').format(sql.SQL(', ').join(options)))
    statements = [Statement(sql.SQL(' ').join(query))]
    if state.get('owner'):
        statements.append(_owner(state))
    if state.get('comment'):
        statements.append(_comment(state))
    return statements


def plan_drop(name, cascade=False):
    query = sql.SQL('DROP PUBLICATION {}').format(sql.Identifier(name))
    if cascade:
        query = query + sql.SQL(' CASCADE')
    return [Statement(query)]


def _owner(state):
    return Statement(sql.SQL('ALTER PUBLICATION {} OWNER TO {}').format(
        _pub(state), sql.Identifier(state['owner'])))


def _comment(state):
    return Statement(sql.SQL('COMMENT ON PUBLICATION {} IS %s').format(_pub(state)),
                     [state.get('comment')])


def _alter(state, clause):
    return Statement(sql.SQL('ALTER PUBLICATION {} {}').format(_pub(state), clause))


def needs_recreate(desired, current):
    """PostgreSQL cannot ALTER a publication between FOR ALL TABLES and a list of objects."""
    return bool(current) and bool(desired['all_tables']) != bool(current['all_tables'])


def _same_rows(a, b):
    """Two table items publish the same rows and columns (column list and row filter)."""
    return (set(a.get('columns') or ()) == set(b.get('columns') or ())
            and (a.get('where') or None) == (b.get('where') or None))


def filter_changes(desired, current):
    """Tables published now and wanted further with another row filter or column list: the
    rows their subscribers hold were chosen by the old ones, so those tables must be copied
    again (sorted keys). Empty when the publication is new or goes FOR ALL TABLES."""
    if not current or desired.get('state') == 'absent' or needs_recreate(desired, current):
        return []
    want, have = desired['tables'], current['tables']
    return sorted(k for k in want if k in have and not _same_rows(want[k], have[k]))


def plan_drop_changed(desired, current):
    """Only take the tables of ``filter_changes`` out of the publication (one statement, or
    none). Their subscribers then drop them from their subscriptions (REFRESH PUBLICATION), and
    a later run adds them back with the new filter and columns: the subscribers copy them
    again from scratch. Nothing else of the publication changes."""
    changed = filter_changes(desired, current)
    if not changed:
        return []
    return [_alter(desired, sql.SQL('DROP TABLE {}').format(
        sql.SQL(', ').join(_table_ref(k) for k in changed)))]


def _table_changes(desired, current):
    """(to drop, to add): changed tables are in both (DROP + ADD in the same transaction)."""
    want, have = desired['tables'], current['tables']
    same = _same_rows
    drop = sorted(k for k in have if k not in want or not same(want[k], have[k]))
    add = sorted(k for k in want if k not in have or not same(want[k], have[k]))
    return drop, add


def _option_changes(desired, current):
    options = []
    if tuple(desired['publish']) != tuple(current['publish']):
        options.append(sql.SQL('publish = {}').format(_publish_value(desired['publish'])))
    want = desired.get('publish_via_partition_root')
    if want is not None and bool(want) != bool(current.get('publish_via_partition_root')):
        options.append(sql.SQL('publish_via_partition_root = {}').format(sql.SQL('true' if want else 'false')))
    want = desired.get('publish_generated_columns')
    if want is not None and want != (current.get('publish_generated_columns') or 'none'):
        options.append(sql.SQL('publish_generated_columns = {}').format(sql.SQL(GENCOLS_SQL[want])))
    return options


def plan_alter(desired, current):
    """Minimal ALTER statements, ordered so PostgreSQL's cross-checks hold at every step.

    Drops come first (a column list must be gone before a schema is added, a partitioned
    table's filter before publish_via_partition_root turns false), then the options, then adds.
    """
    statements = []
    drop, add = _table_changes(desired, current)
    if drop:
        statements.append(_alter(desired, sql.SQL('DROP TABLE {}').format(
            sql.SQL(', ').join(_table_ref(k) for k in drop))))
    gone = [s for s in current['schemas'] if s not in desired['schemas']]
    new = [s for s in desired['schemas'] if s not in current['schemas']]
    if gone:
        statements.append(_alter(desired, sql.SQL('DROP {}').format(_schemas_clause(gone))))
    options = _option_changes(desired, current)
    if options:
        statements.append(_alter(desired, sql.SQL('SET ({})').format(sql.SQL(', ').join(options))))
    if new:
        statements.append(_alter(desired, sql.SQL('ADD {}').format(_schemas_clause(new))))
    if add:
        statements.append(_alter(desired, sql.SQL('ADD {}').format(
            _tables_clause((k, desired['tables'][k]) for k in add))))
    if desired.get('owner') and desired['owner'] != current.get('owner'):
        statements.append(_owner(desired))
    if (desired.get('comment') or None) != (current.get('comment') or None):
        statements.append(_comment(desired))
    return statements


def plan(desired, current, server_version):
    """Statements taking the publication from ``current`` (None: missing) to ``desired``.

    ``desired`` is ``{'state': 'absent', 'name': ..., 'cascade': bool}`` or a complete state
    (see ``merge_desired``). Raises PublicationError when the server lacks a needed feature.
    """
    if desired.get('state') == 'absent':
        return plan_drop(desired['name'], desired.get('cascade')) if current else []
    problems = version_problems(desired, server_version)
    if problems:
        raise PublicationError(' '.join(problems))
    if not current:
        return plan_create(desired)
    if needs_recreate(desired, current):
        recreated = dict(desired)
        recreated['owner'] = desired.get('owner') or current.get('owner')
        return plan_drop(desired['name']) + plan_create(recreated)
    return plan_alter(desired, current)


def plan_replica_identity(fixes):
    """``ALTER TABLE ONLY ... REPLICA IDENTITY ...`` for ``(schema, table, wanted)`` fixes."""
    statements = []
    for schema, table, wanted in fixes:
        if wanted[0] == 'full':
            how = sql.SQL('FULL')
        elif wanted[0] == 'default':
            how = sql.SQL('DEFAULT')
        else:
            how = sql.SQL('USING INDEX {}').format(sql.Identifier(wanted[1]))
        statements.append(Statement(sql.SQL('ALTER TABLE ONLY {} REPLICA IDENTITY {}').format(
            sql.Identifier(schema, table), how)))
    return statements
