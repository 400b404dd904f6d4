# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rest of a table's definition, for a target that takes writes of its own (a peer of a
bidirectional set, ``pg_target_tables`` with ``definition=peer``).

A replica receives every value from its source, so ``target_tables`` creates only what
replication needs (columns, NOT NULL, primary key, replica identity). A peer's applications
insert rows themselves: without the source's defaults an INSERT that leaves a column out fails or
stores NULL, and without its constraints the peer accepts rows the source would refuse. For a
peer the tables created also get:

* column defaults (``pg_get_expr``), and the sequences they use, created with the source's
  parameters (``AS``, ``INCREMENT``, ``MINVALUE``, ``MAXVALUE``, ``START``, ``CACHE``,
  ``CYCLE``) and owned by the same column, starting at their ``START`` value (never the
  source's current value: each peer needs its own key range, docs/bidirectional.md);
* identity columns, with the same kind (``ALWAYS`` or ``BY DEFAULT``) and sequence options;
* check, unique, exclusion and foreign key constraints (``pg_get_constraintdef``), foreign keys
  last, each only to a table of the same call.

A table the peer has already (a one-way set made bidirectional: its tables were created as a
replica's) gets what it lacks of the same: a default where its column has none, identity where
its column has neither, and the constraints it has no constraint of that name for (a unique
index of that name, as a replica got it, becomes the constraint's index: ``USING INDEX``).
Nothing the peer has is changed or dropped, except a plain index that an exclusion constraint
of the same name replaces.

Pure functions; the catalog query (``PEER_SQL``) is run by the module on the source with only
``pg_catalog`` in the search path, so every expression it prints is schema-qualified.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.table_defs import (
    CatalogSQL, TableDef, catalog_sql, catalog_type_name)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# The definitions beyond a replica's, one row per requested table (PostgreSQL 12+: attgenerated).
_SEQUENCE_JSON = '''pg_catalog.json_build_object(
           'schema', sn.nspname, 'name', sc.relname,
           'type', pg_catalog.format_type(s.seqtypid, NULL), 'start', s.seqstart,
           'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache,
           'cycle', s.seqcycle)'''

PEER_SQL = '''
SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
         'schema', req.nsp, 'name', req.rel, 'columns', cols.columns, 'constraints', cons.constraints)
         ORDER BY req.ord)
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS req(nsp, rel, ord)
  JOIN pg_catalog.pg_namespace n ON n.nspname = req.nsp
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = req.rel
  LEFT JOIN LATERAL (
       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', a.attname,
                  'default', CASE WHEN a.attidentity = '' AND a.attgenerated = ''
                                  THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
                  'identity', NULLIF(a.attidentity, ''),
                  'sequences', ARRAY(
                      SELECT ({sequence})::jsonb || pg_catalog.jsonb_build_object('owned', EXISTS (
                                 SELECT FROM pg_catalog.pg_depend o
                                  WHERE o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                    AND o.objid = sc.oid AND o.deptype IN ('a', 'i')
                                    AND o.refobjid = c.oid AND o.refobjsubid = a.attnum))
                        FROM pg_catalog.pg_depend dep
                        JOIN pg_catalog.pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
                        JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
                        JOIN pg_catalog.pg_sequence s ON s.seqrelid = sc.oid
                       WHERE (dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
                              AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass)
                       UNION ALL
                      SELECT ({sequence})::jsonb
                        FROM pg_catalog.pg_depend dep
                        JOIN pg_catalog.pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S'
                        JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
                        JOIN pg_catalog.pg_sequence s ON s.seqrelid = sc.oid
                       WHERE a.attidentity <> '' AND dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND dep.deptype = 'i' AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum))
                  ORDER BY a.attnum) AS columns
         FROM pg_catalog.pg_attribute a
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND (a.atthasdef OR a.attidentity <> '')) cols ON true
  LEFT JOIN LATERAL (
       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', con.conname, 'type', con.contype,
                  'definition', pg_catalog.pg_get_constraintdef(con.oid),
                  'index', ci.relname,
                  'references', CASE WHEN con.contype = 'f' THEN pg_catalog.json_build_array(fn.nspname, fc.relname) END)
                  ORDER BY con.conname) AS constraints
         FROM pg_catalog.pg_constraint con
         LEFT JOIN pg_catalog.pg_class ci ON ci.oid = con.conindid AND con.contype IN ('u', 'x')
         LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
         LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE con.conrelid = c.oid AND con.contype IN ('c', 'u', 'x', 'f')) cons ON true
'''


def peer_sql():
    return sql.SQL(PEER_SQL).format(sequence=sql.SQL(_SEQUENCE_JSON))


class Sequence(object):
    __slots__ = ('schema', 'name', 'type', 'start', 'increment', 'min', 'max', 'cache', 'cycle', 'owned')

    def __init__(self, schema, name, type_, start=1, increment=1, min_=1, max_=None, cache=1,
                 cycle=False, owned=False):
        self.schema, self.name, self.type = schema, name, type_
        self.start, self.increment, self.min, self.max = start, increment, min_, max_
        self.cache, self.cycle, self.owned = cache, cycle, owned

    @property
    def key(self):
        return (self.schema, self.name)


class PeerColumn(object):
    """A column's default (CatalogSQL) or identity kind ('a' always, 'd' by default)."""
    __slots__ = ('name', 'default', 'identity', 'sequences')

    def __init__(self, name, default=None, identity=None, sequences=()):
        self.name, self.default, self.identity = name, default, identity
        self.sequences = list(sequences)


class Constraint(object):
    __slots__ = ('name', 'type', 'definition', 'index', 'references')

    def __init__(self, name, type_, definition, index=None, references=None):
        self.name, self.type, self.definition = name, type_, definition
        self.index = index              # the name of a unique or exclusion constraint's index
        self.references = references    # (schema, table) of a foreign key


class PeerDef(object):
    __slots__ = ('schema', 'name', 'columns', 'constraints')

    def __init__(self, schema, name, columns=(), constraints=()):
        self.schema, self.name = schema, name
        self.columns = list(columns)
        self.constraints = list(constraints)

    @property
    def key(self):
        return (self.schema, self.name)


def _int(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError('unexpected sequence parameter %r from the catalog' % (value,))
    return value


def _sequence_from_catalog(item):
    return Sequence(item['schema'], item['name'], catalog_type_name(item['type']), _int(item['start']),
                    _int(item['increment']), _int(item['min']), _int(item['max']), _int(item['cache']),
                    bool(item['cycle']), bool(item.get('owned')))


def peer_from_catalog(row):
    """One element of the PEER_SQL result (dict) -> PeerDef."""
    columns = [PeerColumn(c['name'], CatalogSQL(c['default']) if c.get('default') else None,
                          c.get('identity'), [_sequence_from_catalog(s) for s in c.get('sequences') or ()])
               for c in row.get('columns') or ()]
    constraints = [Constraint(k['name'], k['type'], CatalogSQL(k['definition']), k.get('index'),
                              tuple(k['references']) if k.get('references') else None)
                   for k in row.get('constraints') or ()]
    return PeerDef(row['schema'], row['name'], columns, constraints)


def without_constraint_indexes(table, peer):
    """The TableDef without the secondary indexes that the peer's unique and exclusion
    constraints create themselves."""
    owned = set(k.index for k in peer.constraints if k.index)
    return TableDef(table.schema, table.name, table.kind, table.columns, table.primary_key,
                    table.replica_identity, table.replica_index,
                    [i for i in table.indexes if i.name not in owned], table.dropped)


def peer_problems(tables, peers, desired_keys, target_peers=None):
    """What stops creating or completing peer tables, before any change: foreign keys to tables
    outside the call (that the peer does not have already), and sequences in a schema the call
    has no tables in."""
    problems = []
    schemas = set(k[0] for k in desired_keys)
    for table in tables:
        peer = peers.get(table.key)
        if peer is None:
            continue
        have = (target_peers or {}).get(table.key)
        have_constraints = set(k.name for k in have.constraints) if have else set()
        for con in peer.constraints:
            if con.type == 'f' and con.references not in desired_keys and con.name not in have_constraints:
                problems.append(
                    'The foreign key %s of %s references %s, which is not in the sync set: add it to '
                    'the set (a peer needs the table its keys point to).'
                    % (con.name, table.display, format_qualified(*con.references)))
        for column in peer.columns:
            for seq in column.sequences:
                if column.identity is None and seq.schema not in schemas:
                    problems.append(
                        'The default of %s.%s uses the sequence %s, in a schema without tables of '
                        'the sync set: create the sequence on the peer first.'
                        % (table.display, column.name, format_qualified(seq.schema, seq.name)))
    return problems


def column_extras(peer):
    """{column name: the DEFAULT or GENERATED ... AS IDENTITY clause} for CREATE TABLE."""
    extras = {}
    for column in peer.columns if peer else ():
        if column.identity in ('a', 'd'):
            extras[column.name] = sql.SQL('GENERATED {} AS IDENTITY{}').format(
                sql.SQL('ALWAYS' if column.identity == 'a' else 'BY DEFAULT'), _identity_options(column))
        elif column.default is not None:
            extras[column.name] = sql.SQL('DEFAULT {}').format(catalog_sql(column.default))
    return extras


def sequence_options(seq):
    return [sql.SQL('INCREMENT BY {}').format(sql.Literal(seq.increment)),
            sql.SQL('MINVALUE {}').format(sql.Literal(seq.min)),
            sql.SQL('MAXVALUE {}').format(sql.Literal(seq.max)),
            sql.SQL('START WITH {}').format(sql.Literal(seq.start)),
            sql.SQL('CACHE {}').format(sql.Literal(seq.cache)),
            sql.SQL('CYCLE' if seq.cycle else 'NO CYCLE')]


def sequences_before(to_create, peers):
    """CREATE SEQUENCE IF NOT EXISTS for the sequences the new tables' defaults use (identity
    sequences come with their columns), each once."""
    statements, seen = [], set()
    for table in to_create:
        for column in _columns(peers, table):
            if column.identity is not None:
                continue
            for seq in column.sequences:
                if seq.key in seen:
                    continue
                seen.add(seq.key)
                statements.append(create_sequence(seq))
    return statements


def after_tables(to_create, peers):
    """After every new table exists: the default sequences' OWNED BY, the check, unique and
    exclusion constraints, then the foreign keys (they need the keys they reference)."""
    owned, constraints, foreign = [], [], []
    for table in to_create:
        ident = sql.Identifier(table.schema, table.name)
        for column in _columns(peers, table):
            for seq in column.sequences if column.identity is None else ():
                if seq.owned:
                    owned.append(Statement(sql.SQL('ALTER SEQUENCE {} OWNED BY {}.{}').format(
                        sql.Identifier(seq.schema, seq.name), ident, sql.Identifier(column.name))))
        peer = peers.get(table.key)
        for con in peer.constraints if peer else ():
            statement = Statement(sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}').format(
                ident, sql.Identifier(con.name), catalog_sql(con.definition)))
            (foreign if con.type == 'f' else constraints).append(statement)
    return owned + constraints + foreign


def complete_existing(existing, peers, target_peers):
    """Statements that give tables the peer has already (``existing``: [(desired, actual)]
    TableDefs) what they lack of the source's definition; in one list: sequences, defaults and
    identities, ownership, constraints, foreign keys last."""
    sequences, columns, owned, constraints, foreign, seen = [], [], [], [], [], set()
    for table, actual in existing:
        peer, have = peers.get(table.key), target_peers.get(table.key)
        if peer is None:
            continue
        ident = sql.Identifier(table.schema, table.name)
        have_columns = dict((c.name, c) for c in have.columns) if have else {}
        present = set(actual.column_names())
        for column in peer.columns:
            if column.name not in present or column.name in have_columns:
                continue   # a column the peer lacks (the column comparison reports it), or set up
            if column.identity in ('a', 'd'):
                options = _identity_options(column)
                columns.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {} AS IDENTITY{}').format(
                    ident, sql.Identifier(column.name),
                    sql.SQL('ALWAYS' if column.identity == 'a' else 'BY DEFAULT'), options)))
                continue
            if column.default is None:
                continue
            for seq in column.sequences:
                if seq.key not in seen:
                    seen.add(seq.key)
                    sequences.append(create_sequence(seq))
                if seq.owned:
                    owned.append(Statement(sql.SQL('ALTER SEQUENCE {} OWNED BY {}.{}').format(
                        sql.Identifier(seq.schema, seq.name), ident, sql.Identifier(column.name))))
            columns.append(Statement(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}').format(
                ident, sql.Identifier(column.name), catalog_sql(column.default))))
        have_constraints = set(k.name for k in have.constraints) if have else set()
        indexes = set(i.name for i in actual.indexes)
        for con in peer.constraints:
            if con.name in have_constraints:
                continue
            (foreign if con.type == 'f' else constraints).extend(
                _add_constraint(ident, table.schema, con, con.index in indexes))
    return sequences + columns + owned + constraints + foreign


def _add_constraint(ident, schema, con, index_exists):
    add = sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}')
    if not index_exists:
        return [Statement(add.format(ident, sql.Identifier(con.name), catalog_sql(con.definition)))]
    if con.type == 'u' and 'DEFERRABLE' not in con.definition:
        # the replica's unique index of the same name becomes the constraint's
        return [Statement(add.format(ident, sql.Identifier(con.name), sql.SQL('UNIQUE USING INDEX {}').format(
            sql.Identifier(con.index))))]
    # an exclusion (or deferrable unique) constraint builds its own index: the replica's plain
    # one of that name goes
    return [Statement(sql.SQL('DROP INDEX {}').format(sql.Identifier(schema, con.index))),
            Statement(add.format(ident, sql.Identifier(con.name), catalog_sql(con.definition)))]


def _identity_options(column):
    if not column.sequences:
        return sql.SQL('')
    seq = column.sequences[0]
    return sql.SQL(' ({})').format(sql.SQL(' ').join(
        [sql.SQL('SEQUENCE NAME {}').format(sql.Identifier(seq.schema, seq.name))] + sequence_options(seq)))


def create_sequence(seq):
    return Statement(sql.SQL('CREATE SEQUENCE IF NOT EXISTS {} AS {} {}').format(
        sql.Identifier(seq.schema, seq.name), catalog_sql(seq.type), sql.SQL(' ').join(sequence_options(seq))))


def _columns(peers, table):
    peer = peers.get(table.key)
    return peer.columns if peer else ()
