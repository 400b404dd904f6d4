# -*- coding: utf-8 -*-
"""Planner of pg_target_tables: desired (source) vs target -> statements, without a database."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import parse_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import (
    CatalogSQL, Column, PlanError, TargetState, catalog_type_name, column_definition,
    describe_differences, parse_table_specs, plan_changes, resolve_desired, table_from_catalog)


def col(name, type_='integer', not_null=False, collation=None, generated=None):
    return {'name': name, 'type': type_, 'not_null': not_null,
            'collation_schema': collation[0] if collation else None,
            'collation': collation[1] if collation else None, 'generated': generated}


def row(schema, name, columns, kind='r', pk=None, replica_identity='d', ri=None):
    return table_from_catalog({
        'schema': schema, 'name': name, 'kind': kind, 'columns': columns,
        'replica_identity': replica_identity,
        'pk_name': pk[0] if pk else None, 'pk_columns': pk[1] if pk else None,
        'ri_name': ri[0] if ri else None, 'ri_columns': ri[1] if ri else None})


def missing(schema, name):
    return row(schema, name, None, kind=None)


ORDERS = row('sales', 'orders', [col('id', 'bigint', True), col('total', 'numeric(10,2)'),
                                 col('note', 'text', collation=('pg_catalog', 'C'))],
             pk=('orders_pkey', ['id']))


def plan(specs, source, target=None, **kw):
    desired = resolve_desired(parse_table_specs(specs), source)
    return plan_changes(desired, target or TargetState(), **kw)


# ---- parsing the option ---------------------------------------------------------------------

def test_specs_strings_and_dicts():
    specs = parse_table_specs(['sales.orders', 'plain', {'name': 'Sales.Order Items', 'columns': ['a', 'B c']}])
    assert [(s.schema, s.name, s.columns) for s in specs] == [
        ('sales', 'orders', None), ('public', 'plain', None), ('Sales', 'Order Items', ['a', 'B c'])]


@pytest.mark.parametrize('entry, fragment', [
    ({'name': 'a.b', 'colums': ['x']}, 'unknown key(s) colums'),
    ({'columns': ['x']}, 'has no name'),
    ({'name': 'a.b', 'columns': []}, 'non-empty list'),
    ({'name': 'a.b', 'columns': 'x'}, 'non-empty list'),
    ({'name': 'a.b', 'columns': ['x', 'x']}, 'more than once'),
    ({'name': 'a.b', 'columns': [1]}, 'non-empty list of column names'),
    ({'name': 'a.b', 'columns': ['x' * 64]}, 'longer than 63 bytes'),
    ('a.b.c', 'not a valid schema.table'),
    (42, 'a table is a "schema.table" string'),
])
def test_specs_invalid(entry, fragment):
    with pytest.raises(PlanError) as e:
        parse_table_specs([entry])
    assert fragment in str(e.value)


def test_specs_duplicates_and_empty():
    with pytest.raises(PlanError, match='listed more than once'):
        parse_table_specs(['a.b', {'name': 'a.b'}])
    with pytest.raises(PlanError, match='at least one table'):
        parse_table_specs([])


# ---- catalog text ---------------------------------------------------------------------------

@pytest.mark.parametrize('text', [
    'integer', 'numeric(10,2)', 'character varying(20)[]', 'timestamp(3) with time zone',
    'public.mood', '"Sales"."My ""Type"""[]', 'information_schema.cardinal_number', '"char"',
    'interval day to second(3)', 'bit varying(5)', '"tÿpe; drop"',
])
def test_catalog_type_names_accepted(text):
    assert catalog_type_name(text) == text


@pytest.mark.parametrize('text', [
    'integer; DROP TABLE x', "text DEFAULT 'x'", 'integer -- c', 'int4)', '"unterminated',
    'numeric(a)', '', None,
])
def test_catalog_type_names_rejected(text):
    with pytest.raises(ValueError):
        catalog_type_name(text)


def test_plain_strings_are_never_inserted_as_sql():
    column = Column('x', 'integer; DROP TABLE t')  # not CatalogSQL
    with pytest.raises(TypeError):
        column_definition(column)


def test_table_from_catalog_columns_and_keys():
    assert ORDERS.column_names() == ['id', 'total', 'note']
    assert isinstance(ORDERS.columns[1].type, CatalogSQL)
    assert ORDERS.columns[2].collation == ('pg_catalog', 'C')
    assert ORDERS.primary_key == ('orders_pkey', ['id'])
    assert row('s', 't', None).columns == []


# ---- create / skip --------------------------------------------------------------------------

def test_create_missing_table_and_schema():
    p = plan(['sales.orders'], [ORDERS])
    assert p.created == ['sales.orders']
    assert render_all(p.statements) == [
        'CREATE SCHEMA "sales"',
        'CREATE TABLE "sales"."orders" ("id" bigint NOT NULL, "total" numeric(10,2), '
        '"note" text COLLATE "pg_catalog"."C", CONSTRAINT "orders_pkey" PRIMARY KEY ("id"))',
    ]


def test_existing_schema_not_created_and_one_create_per_schema():
    other = row('sales', 'items', [col('id')])
    p = plan(['sales.orders', 'sales.items'], [ORDERS, other], TargetState(schemas=['sales']))
    assert [s for s in render_all(p.statements) if s.startswith('CREATE SCHEMA')] == []
    p = plan(['sales.orders', 'sales.items'], [ORDERS, other])
    assert [s for s in render_all(p.statements) if s.startswith('CREATE SCHEMA')] == ['CREATE SCHEMA "sales"']


def test_existing_equal_table_is_skipped():
    target = TargetState(schemas=['sales'], tables=[ORDERS])
    p = plan(['sales.orders'], [ORDERS], target)
    assert p.statements == [] and p.created == [] and p.differences == {}
    assert p.existing == ['sales.orders']


def test_missing_schema_without_create_schemas_fails():
    with pytest.raises(PlanError, match=r'Schemas missing on the target \(create_schemas is false\): sales'):
        plan(['sales.orders'], [ORDERS], create_schemas=False)


def test_generated_column_created_as_generated():
    table = row('public', 't', [col('a'), col('b', generated='(a * 2)')])
    p = plan(['t'], [table], TargetState(schemas=['public']))
    assert render_all(p.statements) == [
        'CREATE TABLE "public"."t" ("a" integer, "b" integer GENERATED ALWAYS AS ((a * 2)) STORED)']


def test_replica_identity_full_and_index():
    full = row('public', 'f', [col('a')], replica_identity='f')
    idx = row('public', 'i', [col('a', not_null=True), col('b')], replica_identity='i', ri=('i_a', ['a']))
    pk_idx = row('public', 'k', [col('a', not_null=True)], pk=('k_pkey', ['a']),
                 replica_identity='i', ri=('k_pkey', ['a']))
    p = plan(['f', 'i', 'k'], [full, idx, pk_idx], TargetState(schemas=['public']))
    assert render_all(p.statements) == [
        'CREATE TABLE "public"."f" ("a" integer)',
        'ALTER TABLE "public"."f" REPLICA IDENTITY FULL',
        'CREATE TABLE "public"."i" ("a" integer NOT NULL, "b" integer)',
        'CREATE UNIQUE INDEX "i_a" ON "public"."i" ("a")',
        'ALTER TABLE "public"."i" REPLICA IDENTITY USING INDEX "i_a"',
        'CREATE TABLE "public"."k" ("a" integer NOT NULL, CONSTRAINT "k_pkey" PRIMARY KEY ("a"))',
        'ALTER TABLE "public"."k" REPLICA IDENTITY USING INDEX "k_pkey"',
    ]


def test_partitioned_source_created_as_plain_table():
    part = row('public', 'p', [col('id', not_null=True)], kind='p', pk=('p_pkey', ['id']))
    p = plan(['p'], [part], TargetState(schemas=['public']))
    assert render_all(p.statements) == [
        'CREATE TABLE "public"."p" ("id" integer NOT NULL, CONSTRAINT "p_pkey" PRIMARY KEY ("id"))']


# ---- source problems ------------------------------------------------------------------------

def test_missing_source_tables_all_named():
    with pytest.raises(PlanError) as e:
        plan(['sales.orders', 'a.gone', 'b.gone too'], [ORDERS, missing('a', 'gone'), missing('b', 'gone too')])
    assert 'Tables missing on the source: a.gone, b.gone too.' in str(e.value)


def test_source_view_is_not_a_table():
    with pytest.raises(PlanError, match='public.v on the source is a view, not a table'):
        plan(['v'], [row('public', 'v', [col('a')], kind='v')])


# ---- column subsets -------------------------------------------------------------------------

def test_column_subset_in_source_order():
    p = plan([{'name': 'sales.orders', 'columns': ['total', 'id']}], [ORDERS], TargetState(schemas=['sales']))
    assert render_all(p.statements) == [
        'CREATE TABLE "sales"."orders" ("id" bigint NOT NULL, "total" numeric(10,2), '
        'CONSTRAINT "orders_pkey" PRIMARY KEY ("id"))']


def test_column_subset_unknown_columns():
    with pytest.raises(PlanError, match='Columns of sales.orders not on the source: nope, Id'):
        plan([{'name': 'sales.orders', 'columns': ['id', 'nope', 'Id']}], [ORDERS])


def test_column_subset_must_keep_key_columns():
    with pytest.raises(PlanError, match='leave out its primary key columns id'):
        plan([{'name': 'sales.orders', 'columns': ['total']}], [ORDERS])
    idx = row('public', 'i', [col('a', not_null=True), col('b')], replica_identity='i', ri=('i_a', ['a']))
    with pytest.raises(PlanError, match='replica identity index columns a'):
        plan([{'name': 'i', 'columns': ['b']}], [idx])


def test_column_subset_compared_against_existing_table():
    target = TargetState(schemas=['sales'], tables=[row('sales', 'orders', [col('id', 'bigint', True), col('total', 'numeric(10,2)')])])
    p = plan([{'name': 'sales.orders', 'columns': ['id', 'total']}], [ORDERS], target)
    assert p.statements == [] and p.differences == {}


# ---- differences ----------------------------------------------------------------------------

def test_differences_fail_before_anything_is_created():
    actual = row('sales', 'orders', [col('id', 'integer', True), col('note', 'text', collation=('pg_catalog', 'C')),
                                     col('legacy')])
    target = TargetState(schemas=['sales'], tables=[actual])
    new = row('sales', 'new', [col('id')])
    with pytest.raises(PlanError) as e:
        plan(['sales.new', 'sales.orders'], [new, ORDERS], target)
    assert e.value.differences == {'sales.orders': {
        'missing': ['total'], 'extra': ['legacy'],
        'type_differs': [{'column': 'id', 'source': 'bigint', 'target': 'integer'}]}}
    assert ('sales.orders: missing on target: total; extra on target: legacy; '
            'type differs: id (source bigint, target integer)') in str(e.value)


def test_differences_reported_without_failing_when_not_checked():
    actual = row('sales', 'orders', [col('id', 'bigint', True)])
    p = plan(['sales.orders'], [ORDERS], TargetState(schemas=['sales'], tables=[actual]), check_columns=False)
    assert p.statements == []
    assert p.differences == {'sales.orders': {'missing': ['total', 'note']}}


def test_generated_versus_plain_column_differs():
    source = row('public', 't', [col('a'), col('b', generated='(a * 2)')])
    target = TargetState(schemas=['public'], tables=[row('public', 't', [col('a'), col('b')])])
    with pytest.raises(PlanError) as e:
        plan(['t'], [source], target)
    assert e.value.differences['public.t']['type_differs'] == [
        {'column': 'b', 'source': 'integer GENERATED ALWAYS AS ((a * 2)) STORED', 'target': 'integer'}]


def test_target_object_that_is_not_a_table():
    target = TargetState(schemas=['sales'], tables=[row('sales', 'orders', [col('id')], kind='v')])
    with pytest.raises(PlanError, match='sales.orders exists on the target as a view'):
        plan(['sales.orders'], [ORDERS], target)


def test_missing_types_and_collations_on_target():
    table = row('public', 't', [col('m', 'public.mood'), col('n', 'public.mood[]'),
                                col('c', 'text', collation=('public', 'de_x'))])
    target = TargetState(schemas=['public'], missing_types=['public.mood', 'public.mood[]'],
                         missing_collations=[('public', 'de_x')])
    with pytest.raises(PlanError) as e:
        plan(['t'], [table], target)
    text = str(e.value)
    assert 'Cannot create public.t: types missing on the target: public.mood, public.mood[]' in text
    assert 'collations missing on the target: public.de_x' in text


def test_describe_differences_sorted():
    assert describe_differences({'b.t': {'extra': ['x']}, 'a.t': {'missing': ['y']}}) == \
        'a.t: missing on target: y | b.t: extra on target: x'


# ---- hostile names --------------------------------------------------------------------------

HOSTILE = [
    ('we"ird', 'tab"le'),
    ('semi;colon', 'x; DROP TABLE y; --'),
    ('with space', 'Mixed Case'),
    ('ünïcødé', 'tàblé ✓'),
    ('s' * 63, 't' * 63),
    ('pct%s', '100%'),
]


def q(name):
    return '"%s"' % name.replace('"', '""')


@pytest.mark.parametrize('schema, name', HOSTILE)
def test_hostile_names_are_quoted_identifiers(schema, name):
    column = 'c"ol; --' if len(name) < 63 else 'c' * 63
    table = row(schema, name, [col(column, 'text', True)], pk=(name, [column]))
    spec = '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))
    p = plan([{'name': spec, 'columns': [column]}], [table])
    assert render_all(p.statements) == [
        'CREATE SCHEMA %s' % q(schema),
        'CREATE TABLE %s.%s (%s text NOT NULL, CONSTRAINT %s PRIMARY KEY (%s))'
        % (q(schema), q(name), q(column), q(name), q(column)),
    ]
    assert [parse_qualified(c) for c in p.created] == [(schema, name)]


def test_unicode_63_byte_name_limit_is_in_bytes():
    name = 'é' * 31 + 'x'  # 63 bytes
    assert parse_table_specs(['public.' + name])[0].name == name
    with pytest.raises(PlanError, match='longer than 63 bytes'):
        parse_table_specs(['public.' + 'é' * 32])


def test_mixed_case_names_are_not_folded():
    lower = row('sales', 'orders', [col('id')])
    upper = row('Sales', 'Orders', [col('Id')])
    target = TargetState(schemas=['sales'], tables=[lower])
    p = plan(['Sales.Orders', 'sales.orders'], [upper, lower], target)
    assert p.created == ['Sales.Orders']
    assert render_all(p.statements) == ['CREATE SCHEMA "Sales"', 'CREATE TABLE "Sales"."Orders" ("Id" integer)']


# ---- secondary indexes ----------------------------------------------------------------------

def ix(name, method, columns, unique=False, immediate=True, valid=True):
    return {'name': name, 'method': method, 'columns': columns, 'unique': unique,
            'immediate': immediate, 'valid': valid}


def indexed(indexes, schema='sales', name='orders'):
    """ORDERS with secondary indexes (as the catalog query returns them)."""
    table = table_from_catalog({
        'schema': schema, 'name': name, 'kind': 'r',
        'columns': [col('id', 'bigint', True), col('customer', 'integer'), col('note', 'text')],
        'pk_name': 'orders_pkey', 'pk_columns': ['id'], 'indexes': indexes})
    return table


SOURCE_INDEXES = [
    ix('orders_customer_idx', 'btree (customer)', ['customer']),
    ix('orders_note_key', 'btree (note) WHERE (customer > 0)', ['customer', 'note'], unique=True),
    ix('orders_pkey', 'btree (id)', ['id'], unique=True),  # never listed by the query; ignored
]
BUILD_CUSTOMER = 'CREATE INDEX "orders_customer_idx" ON "sales"."orders" USING btree (customer)'
BUILD_NOTE = ('CREATE UNIQUE INDEX "orders_note_key" ON "sales"."orders" USING btree (note) '
              'WHERE (customer > 0)')


def test_indexes_not_planned_by_default():
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], TargetState(schemas=['sales']))
    assert not any('INDEX' in q for q in render_all(p.statements))
    assert p.index_statements == []
    assert p.indexes == {'built': {}, 'deferred': {}, 'skipped': []}


def test_indexes_of_created_table_deferred():
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], TargetState(schemas=['sales']),
             indexes=True)
    assert render_all(p.statements) == [
        'CREATE TABLE "sales"."orders" ("id" bigint NOT NULL, "customer" integer, "note" text, '
        'CONSTRAINT "orders_pkey" PRIMARY KEY ("id"))']
    assert p.index_statements == []
    assert p.indexes['deferred'] == {'sales.orders': ['orders_customer_idx', 'orders_note_key']}
    assert p.indexes['built'] == {}


def test_indexes_of_created_table_with_the_table_when_not_deferred():
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], TargetState(schemas=['sales']),
             indexes=True, defer_indexes=False)
    assert render_all(p.statements)[1:] == [BUILD_CUSTOMER, BUILD_NOTE]
    assert not any(s.autocommit for s in p.statements)  # one transaction with the table
    assert p.index_statements == []
    assert p.indexes['built'] == {'sales.orders': ['orders_customer_idx', 'orders_note_key']}


def test_indexes_of_synchronised_table_built_each_in_its_own_transaction():
    existing = indexed([ix('orders_customer_idx', 'btree (customer)', ['customer'])])
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)],
             TargetState(schemas=['sales'], tables=[existing]), indexes=True)
    assert p.statements == []
    assert render_all(p.index_statements) == [BUILD_NOTE]
    assert all(s.autocommit for s in p.index_statements)
    assert p.indexes == {'built': {'sales.orders': ['orders_note_key']}, 'deferred': {},
                         'skipped': []}


def test_indexes_of_table_still_copying_deferred():
    target = TargetState(schemas=['sales'], tables=[indexed([])], copying=[('sales', 'orders')])
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], target, indexes=True)
    assert p.index_statements == []
    assert p.indexes['deferred'] == {'sales.orders': ['orders_customer_idx', 'orders_note_key']}
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], target, indexes=True, defer_indexes=False)
    assert render_all(p.index_statements) == [BUILD_CUSTOMER, BUILD_NOTE]


def test_all_indexes_present_nothing_to_do():
    target = TargetState(schemas=['sales'], tables=[indexed(SOURCE_INDEXES)])
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)], target, indexes=True)
    assert p.statements == [] and p.index_statements == []


def test_invalid_index_dropped_and_built_again():
    broken = indexed([ix('orders_customer_idx', 'btree (customer)', ['customer'], valid=False),
                      SOURCE_INDEXES[1]])
    p = plan(['sales.orders'], [indexed(SOURCE_INDEXES)],
             TargetState(schemas=['sales'], tables=[broken]), indexes=True)
    assert render_all(p.index_statements) == [
        'DROP INDEX "sales"."orders_customer_idx"', BUILD_CUSTOMER]


def test_indexes_skipped_with_reasons():
    source = indexed([
        ix('orders_customer_idx', 'btree (customer)', ['customer']),
        ix('orders_note_idx', 'btree (lower(note))', ['note']),
        ix('orders_deferrable_key', 'btree (customer)', ['customer'], unique=True, immediate=False),
        ix('orders_odd_idx', None, ['customer']),
    ])
    p = plan([{'name': 'sales.orders', 'columns': ['id', 'customer']}], [source],
             TargetState(schemas=['sales']), indexes=True, defer_indexes=False)
    assert p.indexes['built'] == {'sales.orders': ['orders_customer_idx']}
    reasons = dict((s['index'], s['reason']) for s in p.indexes['skipped'])
    assert sorted(reasons) == ['orders_deferrable_key', 'orders_note_idx', 'orders_odd_idx']
    assert 'leaves out: note' in reasons['orders_note_idx']
    assert 'DEFERRABLE' in reasons['orders_deferrable_key']
    assert 'could not be read' in reasons['orders_odd_idx']


def test_replica_identity_index_not_built_twice():
    source = table_from_catalog({
        'schema': 'public', 'name': 't', 'kind': 'r', 'replica_identity': 'i',
        'columns': [col('a', not_null=True), col('b')], 'ri_name': 't_a_key', 'ri_columns': ['a'],
        'indexes': [ix('t_a_key', 'btree (a)', ['a'], unique=True), ix('t_b_idx', 'btree (b)', ['b'])]})
    p = plan(['t'], [source], TargetState(schemas=['public']), indexes=True, defer_indexes=False)
    assert render_all(p.statements) == [
        'CREATE TABLE "public"."t" ("a" integer NOT NULL, "b" integer)',
        'CREATE UNIQUE INDEX "t_a_key" ON "public"."t" ("a")',
        'ALTER TABLE "public"."t" REPLICA IDENTITY USING INDEX "t_a_key"',
        'CREATE INDEX "t_b_idx" ON "public"."t" USING btree (b)',
    ]


def test_index_definition_must_come_from_the_catalog():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import (
        Index, create_index)
    with pytest.raises(TypeError):
        create_index(ORDERS, Index('x', method='btree (a); DROP TABLE t'))


def test_virtual_generated_columns_stay_virtual_and_need_18_on_the_target():
    source = row('app', 'v', [col('id', 'bigint', True),
                              dict(col('twice', 'bigint'), generated='(id * 2)', generated_kind='v'),
                              dict(col('thrice', 'bigint'), generated='(id * 3)', generated_kind='s')],
                 pk=('v_pkey', ['id']))
    text = render_all(plan(['app.v'], [source], TargetState(['app'], server_version=180001)).statements)
    assert text[0] == ('CREATE TABLE "app"."v" ("id" bigint NOT NULL, '
                       '"twice" bigint GENERATED ALWAYS AS ((id * 2)) VIRTUAL, '
                       '"thrice" bigint GENERATED ALWAYS AS ((id * 3)) STORED, CONSTRAINT "v_pkey" PRIMARY KEY ("id"))')
    with pytest.raises(PlanError) as e:
        plan(['app.v'], [source], TargetState(['app'], server_version=170005))
    assert 'twice is virtual generated on the source, which needs PostgreSQL 18 on the target (this one is 17)' in str(e.value)


def test_copied_generated_columns_are_plain_on_the_target():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.table_defs import (
        CatalogSQL, Column, TableDef)
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import resolve_desired
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_refs
    cols = [Column('id', CatalogSQL('integer'), True),
            Column('total', CatalogSQL('numeric'), generated=CatalogSQL('(id * 2)')),
            Column('label', CatalogSQL('text'), generated=CatalogSQL("('x'::text)"), virtual=True)]
    source = [TableDef('public', 't', 'r', cols, ('t_pkey', ['id']))]
    refs, errors = parse_table_refs(['public.t'], ('name', 'columns'))
    assert not errors
    computed = resolve_desired(refs, source)[0]
    copied = resolve_desired(refs, source, 'copy')[0]
    assert [c.generated is not None for c in computed.columns] == [False, True, True]
    assert [(c.name, c.generated is not None, c.virtual) for c in copied.columns] == [
        ('id', False, False), ('total', False, False), ('label', True, True)]
