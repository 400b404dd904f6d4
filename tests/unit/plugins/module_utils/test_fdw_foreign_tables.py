"""pg_foreign_tables planner: IMPORT FOREIGN SCHEMA, explicit tables, drift, exclusive, absent."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.foreign_tables import (
    CatalogState, Column, ForeignTablesSpec, ImportSpec, Probe, Relation, parse_tables,
    plan_foreign_tables, probe_import_statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    render, render_all)

HOSTILE = ['Mixed Case', 'with "quotes"', "semi;colon'; DROP TABLE x;--", 'ünïcødé ✓', 'x' * 63]


def q(name):
    return '"%s"' % name.replace('"', '""')


def imported(name, *columns, **kw):
    """A foreign table as IMPORT FOREIGN SCHEMA creates it (columns: (name, type[, not_null]))."""
    cols = [Column(c[0], c[1], c[2] if len(c) > 2 else False, {'column_name': c[0]})
            for c in columns]
    return Relation(name, 'f', kw.get('server', 'src'), cols,
                    {'schema_name': kw.get('remote_schema', 'sales'), 'table_name': name})


ORDERS = imported('orders', ('id', 'bigint', True), ('note', 'text'))
CUSTOMERS = imported('customers', ('id', 'integer', True))


def spec(tables=None, exclude=(), explicit_only=False, **kw):
    import_spec, explicit = parse_tables(tables, exclude, kw.pop('remote_schema', 'sales'),
                                         kw.pop('import_options', {}))
    return ForeignTablesSpec('src', kw.pop('schema', 'shop'), import_spec=import_spec,
                             tables=explicit, **kw)


def local(*relations, **kw):
    return CatalogState(kw.get('schema_exists', True), dict((r.name, r) for r in relations))


def probe(*relations, **kw):
    return Probe(dict((r.name, r) for r in relations), kw.get('types'))


# ---- input ------------------------------------------------------------------------------

def test_parse_tables_all_limit_to_and_explicit():
    imp, explicit = parse_tables(None, ['audit'], 'sales', {'import_default': True})
    assert imp.imports_all and imp.exclude == ['audit'] and explicit == []
    assert imp.options == {'import_default': 'true'}
    imp, explicit = parse_tables(['orders', {'name': 'Customers'},
                                  {'name': 'inbox', 'remote_name': 'orders',
                                   'columns': [{'name': 'id', 'type': 'bigint'}]}],
                                 [], 'sales', {})
    assert imp.tables == ['orders', 'Customers']
    assert [(t.name, t.remote_schema, t.remote_name) for t in explicit] == [
        ('inbox', 'sales', 'orders')]
    imp, explicit = parse_tables([{'name': 'x', 'columns': [{'name': 'a', 'type': 'int'}]}],
                                 [], 'sales', {})
    assert imp is None


@pytest.mark.parametrize('tables,message', [
    ([{'name': 'x', 'remote_name': 'y'}], 'need columns'),
    (['a', 'a'], 'listed more than once'),
    ([{'name': 'x', 'colums': []}], "unknown key.*colums"),
    ([{'name': 'x', 'columns': [{'name': 'a'}]}], 'needs a type'),
    ([{'name': 'x', 'columns': ['a int']}], 'must be a dict'),
    ([{'name': 'x', 'columns': [{'name': 'a', 'type': 'int', 'default': 1}]}], 'unknown key'),
    (['y' * 64], 'longer than 63 bytes'),
    ([''], 'empty'),
    ([42], 'names or dicts'),
    ([{'name': 'x', 'columns': [{'name': 'a', 'type': 'int'}],
       'options': {'table_name': 'z'}}], 'use remote_name'),
])
def test_parse_tables_errors(tables, message):
    with pytest.raises(PlanError, match=message):
        parse_tables(tables, [], 'sales', {})


def test_probe_statement_limit_to_and_except():
    assert render(probe_import_statement(ImportSpec('sales', ['a', 'b']), 'src')) == (
        'IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("a", "b") FROM SERVER "src" INTO "pg_temp"')
    assert render(probe_import_statement(ImportSpec('sales', None, ['audit'],
                                                    {'import_default': True}), 'src')) == (
        'IMPORT FOREIGN SCHEMA "sales" EXCEPT ("audit") FROM SERVER "src" INTO "pg_temp" '
        'OPTIONS ("import_default" \'true\')')
    assert render(probe_import_statement(ImportSpec('sales'), 'src')) == (
        'IMPORT FOREIGN SCHEMA "sales" FROM SERVER "src" INTO "pg_temp"')


# ---- import -----------------------------------------------------------------------------

def test_import_all_missing_tables_in_one_statement():
    p = plan_foreign_tables(spec(), local(schema_exists=False), probe(ORDERS, CUSTOMERS))
    assert render_all(p.statements) == [
        'CREATE SCHEMA "shop"',
        'IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("customers", "orders") FROM SERVER "src" '
        'INTO "shop"']
    assert p.imported == ['shop.customers', 'shop.orders']
    assert sorted(p.after) == ['customers', 'orders']


def test_import_scales_to_many_tables_with_one_statement():
    many = [imported('t%04d' % i, ('id', 'integer')) for i in range(2000)]
    p = plan_foreign_tables(spec(), local(), probe(*many))
    assert len(p.statements) == 1


def test_idempotent_when_definitions_match():
    p = plan_foreign_tables(spec(), local(ORDERS, CUSTOMERS), probe(ORDERS, CUSTOMERS))
    assert p.statements == [] and p.drift == {} and p.warnings == []
    p = plan_foreign_tables(spec(['orders']), local(ORDERS), probe(ORDERS))
    assert p.statements == []


def test_missing_schema_without_create_schema():
    with pytest.raises(PlanError, match='schema shop does not exist'):
        plan_foreign_tables(spec(create_schema=False), local(schema_exists=False), probe())


def test_limit_to_names_not_found_remotely():
    with pytest.raises(PlanError, match='not found in remote schema sales through server src: '
                                        'nope'):
        plan_foreign_tables(spec(['orders', 'nope']), local(), probe(ORDERS))


def test_name_taken_by_another_relation():
    with pytest.raises(PlanError, match='shop.orders already exists as a table'):
        plan_foreign_tables(spec(['orders']), local(Relation('orders', 'r')), probe(ORDERS))
    with pytest.raises(PlanError, match='foreign table of server other'):
        plan_foreign_tables(spec(['orders']), local(imported('orders', server='other')),
                            probe(ORDERS))


GROWN = imported('orders', ('id', 'bigint', True), ('note', 'text'), ('discount', 'numeric(5,2)'))
CHANGED = imported('orders', ('id', 'integer', False))


def test_drift_reported_by_default():
    p = plan_foreign_tables(spec(['orders']), local(ORDERS), probe(GROWN))
    assert p.statements == []
    assert p.drift == {'shop.orders': {'added': ['discount'], 'removed': [], 'changed': []}}
    assert 'remote columns not here: discount' in p.warnings[0]
    assert 'on_drift: update' in p.warnings[0]


def test_drift_update_alters_the_table_in_one_statement():
    p = plan_foreign_tables(spec(['orders'], on_drift='update'), local(ORDERS), probe(GROWN))
    assert render_all(p.statements) == [
        'ALTER FOREIGN TABLE "shop"."orders" ADD COLUMN "discount" numeric(5,2) '
        'OPTIONS ("column_name" \'discount\')']
    assert p.altered == ['shop.orders']
    p = plan_foreign_tables(spec(['orders'], on_drift='update', cascade=True), local(ORDERS),
                            probe(CHANGED))
    assert render_all(p.statements) == [
        'ALTER FOREIGN TABLE "shop"."orders" DROP COLUMN "note" CASCADE, '
        'ALTER COLUMN "id" TYPE integer, ALTER COLUMN "id" DROP NOT NULL']
    assert p.drift['shop.orders']['changed'] == [
        {'column': 'id', 'local': 'bigint NOT NULL', 'remote': 'integer'}]


def test_drift_fail():
    with pytest.raises(PlanError, match='shop.orders: columns gone remotely: note'):
        plan_foreign_tables(spec(['orders'], on_drift='fail'), local(ORDERS), probe(CHANGED))


def test_table_gone_remotely_when_importing_all():
    current = local(ORDERS, CUSTOMERS, imported('kept', remote_schema='other'))
    p = plan_foreign_tables(spec(), current, probe(ORDERS))
    assert p.statements == [] and p.drift == {'shop.customers': {'missing_remotely': True}}
    p = plan_foreign_tables(spec(on_drift='update'), current, probe(ORDERS))
    assert render_all(p.statements) == ['DROP FOREIGN TABLE "shop"."customers"']
    assert 'customers' not in p.after and 'kept' in p.after


def test_excluded_tables_are_not_drift():
    p = plan_foreign_tables(spec(exclude=['customers']), local(ORDERS, CUSTOMERS), probe(ORDERS))
    assert p.statements == [] and p.drift == {}


def test_without_probe_imports_what_is_missing():
    unread = Probe(None, error='server does not exist')
    p = plan_foreign_tables(spec(['orders', 'customers']), local(ORDERS), unread)
    assert render_all(p.statements) == [
        'IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("customers") FROM SERVER "src" INTO "shop"']
    p = plan_foreign_tables(spec(exclude=['audit']), local(ORDERS), unread)
    assert render_all(p.statements) == [
        'IMPORT FOREIGN SCHEMA "sales" EXCEPT ("audit", "orders") FROM SERVER "src" '
        'INTO "shop"']


# ---- explicit tables ----------------------------------------------------------------------

INBOX = {'name': 'inbox', 'remote_name': 'orders',
         'columns': [{'name': 'id', 'type': 'int8', 'not_null': True},
                     {'name': 'text', 'type': 'varchar(20)', 'remote_name': 'note'}],
         'options': {'batch_size': 1000}}
TYPES = {'int8': 'bigint', 'varchar(20)': 'character varying(20)'}


def test_explicit_table_created_with_canonical_types():
    p = plan_foreign_tables(spec([INBOX]), local(), probe(types=TYPES))
    assert render_all(p.statements) == [
        'CREATE FOREIGN TABLE "shop"."inbox" ("id" bigint NOT NULL, "text" character '
        'varying(20) OPTIONS ("column_name" \'note\')) SERVER "src" OPTIONS ("schema_name" '
        '\'sales\', "table_name" \'orders\', "batch_size" \'1000\')']
    assert p.created == ['shop.inbox']


def test_explicit_table_idempotent_and_altered():
    existing = Relation('inbox', 'f', 'src',
                        [Column('id', 'bigint', True),
                         Column('text', 'character varying(20)', False, {'column_name': 'note'})],
                        {'schema_name': 'sales', 'table_name': 'orders', 'batch_size': '1000'})
    assert plan_foreign_tables(spec([INBOX]), local(existing), probe(types=TYPES)).statements == []
    changed = dict(INBOX, options={'fetch_size': 50},
                   columns=[{'name': 'id', 'type': 'int8'}, {'name': 'extra', 'type': 'text'}])
    p = plan_foreign_tables(spec([changed]), local(existing),
                            probe(types=dict(TYPES, text='text')))
    assert render_all(p.statements) == [
        'ALTER FOREIGN TABLE "shop"."inbox" DROP COLUMN "text", ALTER COLUMN "id" DROP NOT NULL, '
        'ADD COLUMN "extra" text, OPTIONS (ADD "fetch_size" \'50\', DROP "batch_size")']
    assert p.altered == ['shop.inbox']


# ---- exclusive and absent -----------------------------------------------------------------

def test_exclusive_drops_undesired_tables_of_this_server_only():
    other = imported('foreign_elsewhere', server='other')
    p = plan_foreign_tables(spec(['orders'], exclusive=True), local(ORDERS, CUSTOMERS, other),
                            probe(ORDERS))
    assert render_all(p.statements) == ['DROP FOREIGN TABLE "shop"."customers"']


def test_absent_drops_desired_tables_of_this_server_in_one_statement():
    other = imported('orders2', server='other')
    p = plan_foreign_tables(spec(['orders', 'customers', 'orders2'], state='absent',
                                 cascade=True),
                            local(ORDERS, CUSTOMERS, other), Probe())
    assert render_all(p.statements) == [
        'DROP FOREIGN TABLE "shop"."customers", "shop"."orders" CASCADE']
    p = plan_foreign_tables(spec(state='absent', exclude=['customers']),
                            local(ORDERS, CUSTOMERS), Probe())
    assert render_all(p.statements) == ['DROP FOREIGN TABLE "shop"."orders"']
    assert plan_foreign_tables(spec(state='absent'), local(schema_exists=False),
                               Probe()).statements == []


# ---- hostile names ------------------------------------------------------------------------

@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_names(name):
    table = imported(name, (name, 'text'), remote_schema=name)
    p = plan_foreign_tables(
        ForeignTablesSpec(name, name, import_spec=ImportSpec(name, [name])),
        local(schema_exists=False), probe(table))
    assert render_all(p.statements) == [
        'CREATE SCHEMA %s' % q(name),
        'IMPORT FOREIGN SCHEMA %s LIMIT TO (%s) FROM SERVER %s INTO %s'
        % (q(name), q(name), q(name), q(name))]
    explicit = {'name': name, 'columns': [{'name': name, 'type': 'text', 'remote_name': name}],
                'options': {'fetch_size': "1'0"}}
    import_spec, tables = parse_tables([explicit], [], name, {})
    p = plan_foreign_tables(ForeignTablesSpec('s', name, tables=tables), local(), probe())
    value = name.replace("'", "''")
    assert render_all(p.statements) == [
        'CREATE FOREIGN TABLE %s.%s (%s text OPTIONS ("column_name" \'%s\')) SERVER "s" '
        'OPTIONS ("schema_name" \'%s\', "table_name" \'%s\', "fetch_size" \'1\'\'0\')'
        % (q(name), q(name), q(name), value, value, value)]
