"""pg_foreign_table_copies planner: materialized-view copies, unique keys, refresh SQL."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.copies import (
    CopySpec, Relation, fingerprint_comment, definition, index_name, plan_copies)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all

SRC = ('shop_fdw', 'orders')
COPY = ('shop', 'orders')
SOURCE = Relation(True, 'f', 'src', [('id', 'id'), ('Note', 'note'), ('amount', 'amount')],
                  {'schema_name': 'sales', 'table_name': 'orders'})
KEYS = {('sales', 'orders'): ['id']}
ABSENT = Relation(False)


def plan(spec=None, copy=ABSENT, keys=None, **kw):
    spec = spec or CopySpec(COPY, SRC)
    return plan_copies([spec], {SRC: SOURCE}, {COPY: copy}, KEYS if keys is None else keys, **kw)


def existing(spec=None, indexes=(), **kw):
    spec = spec or CopySpec(COPY, SRC)
    query, _columns = definition(spec, SOURCE)
    return Relation(True, 'm', comment=fingerprint_comment(spec, query),
                    unique_indexes=indexes, **kw)


def test_create_with_unique_index_on_remote_primary_key():
    p = plan(copy=Relation(False, schema_exists=False))
    idx = index_name(CopySpec(COPY, SRC))
    shown = render_all(p.statements)
    assert shown[:2] == [
        'CREATE SCHEMA "shop"',
        'CREATE MATERIALIZED VIEW "shop"."orders" AS SELECT "id", "Note", "amount" FROM '
        '"shop_fdw"."orders" WITH DATA']
    assert shown[2].startswith('COMMENT ON MATERIALIZED VIEW "shop"."orders" IS '
                               "'tablesync.postgresql copy of shop_fdw.orders (definition ")
    assert shown[3] == 'CREATE UNIQUE INDEX "%s" ON "shop"."orders" ("id")' % idx
    assert p.created == ['shop.orders']
    assert p.refresh_sql == ['REFRESH MATERIALIZED VIEW CONCURRENTLY "shop"."orders"']


def test_idempotent_and_refresh():
    idx = index_name(CopySpec(COPY, SRC))
    copy = existing(indexes=[(idx, ['id'])])
    assert plan(copy=copy).statements == []
    assert render_all(plan(copy=copy, refresh=True).statements) == [
        'REFRESH MATERIALIZED VIEW CONCURRENTLY "shop"."orders"']
    unpopulated = existing(indexes=[(idx, ['id'])], populated=False)
    assert render_all(plan(copy=unpopulated, refresh=True).statements) == [
        'REFRESH MATERIALIZED VIEW "shop"."orders"']


def test_a_users_unique_index_is_enough():
    assert plan(copy=existing(indexes=[('mine', ['id'])])).statements == []


def test_no_key_means_plain_refresh_and_a_warning():
    p = plan(copy=existing(), keys={})
    assert p.statements == [] and 'without CONCURRENTLY' in p.warnings[0]
    assert p.refresh_sql == ['REFRESH MATERIALIZED VIEW "shop"."orders"']


def test_changed_definition_recreates():
    spec = CopySpec(COPY, SRC, columns=['id', 'amount'], where="amount > 0 AND note <> ''")
    p = plan(spec, copy=existing(), cascade=True)
    shown = render_all(p.statements)
    assert shown[0] == 'DROP MATERIALIZED VIEW "shop"."orders" CASCADE'
    assert shown[1] == ('CREATE MATERIALIZED VIEW "shop"."orders" AS SELECT "id", "amount" FROM '
                        '"shop_fdw"."orders" WHERE (amount > 0 AND note <> \'\') WITH DATA')
    assert p.recreated == ['shop.orders']


def test_explicit_key_and_key_changes():
    spec = CopySpec(COPY, SRC, unique_key=['id', 'Note'])
    idx = index_name(spec)
    p = plan(spec, copy=existing(spec, indexes=[(idx, ['id'])]))
    assert render_all(p.statements) == [
        'DROP INDEX "shop"."%s"' % idx,
        'CREATE UNIQUE INDEX "%s" ON "shop"."orders" ("id", "Note")' % idx]
    none = CopySpec(COPY, SRC, unique_key=[])
    assert render_all(plan(none, copy=existing(none, indexes=[(idx, ['id'])])).statements) == [
        'DROP INDEX "shop"."%s"' % idx]


def test_primary_key_outside_the_copied_columns():
    p = plan(CopySpec(COPY, SRC, columns=['amount']))
    assert not any('UNIQUE' in s for s in render_all(p.statements))
    assert 'not among the copied columns' in p.warnings[0]


@pytest.mark.parametrize('spec,copy,message', [
    (CopySpec(COPY, SRC, columns=['nope']), ABSENT, 'has no column.*nope'),
    (CopySpec(COPY, SRC, unique_key=['nope']), ABSENT, 'unique_key column.*nope'),
    (CopySpec(COPY, ('x', 'y')), ABSENT, 'source x.y does not exist'),
    (None, Relation(True, 'r'), 'not a materialized view'),
    (None, Relation(True, 'm', comment='mine'), 'not made by this module'),
])
def test_errors(spec, copy, message):
    sources = {SRC: SOURCE, ('x', 'y'): Relation(False)}
    spec = spec or CopySpec(COPY, SRC)
    with pytest.raises(PlanError, match=message):
        plan_copies([spec], sources, {COPY: copy}, KEYS)


def test_duplicates_and_absent():
    with pytest.raises(PlanError, match='more than once'):
        plan_copies([CopySpec(COPY, SRC), CopySpec(COPY, SRC)], {SRC: SOURCE}, {COPY: ABSENT}, {})
    p = plan(copy=existing(), state='absent')
    assert render_all(p.statements) == ['DROP MATERIALIZED VIEW "shop"."orders"']
    assert plan(state='absent').statements == []
    # only copies made by this module are dropped: other relations with the name are left
    assert plan(copy=Relation(True, 'f', 'src'), state='absent').statements == []
    assert plan(copy=Relation(True, 'm', comment='mine'), state='absent').statements == []


@pytest.mark.parametrize('name', ['Mixed Case', 'with "quotes"', "semi;colon'; x", 'ünï ✓',
                                  'x' * 63])
def test_hostile_names(name):
    source = Relation(True, 'f', 's', [(name, name)])
    spec = CopySpec((name, name), (name, 'src'), unique_key=[name])
    p = plan_copies([spec], {(name, 'src'): source}, {(name, name): Relation(False)}, {})
    q = '"%s"' % name.replace('"', '""')
    assert render_all(p.statements)[0] == (
        'CREATE MATERIALIZED VIEW %s.%s AS SELECT %s FROM %s."src" WITH DATA' % (q, q, q, q))
    assert len(index_name(spec).encode()) <= 63


def test_check_mode_with_a_source_not_imported_yet():
    missing = {SRC: Relation(False)}
    p = plan_copies([CopySpec(COPY, SRC)], missing, {COPY: ABSENT}, {}, check_mode=True)
    assert render_all(p.statements)[0] == (
        'CREATE MATERIALIZED VIEW "shop"."orders" AS SELECT * FROM "shop_fdw"."orders" WITH DATA')
    assert 'does not exist yet' in p.warnings[0]
    p = plan_copies([CopySpec(COPY, SRC, columns=['id'], where='id > 1', unique_key=['id'])],
                    missing, {COPY: ABSENT}, {}, check_mode=True)
    shown = render_all(p.statements)
    assert shown[0] == ('CREATE MATERIALIZED VIEW "shop"."orders" AS SELECT "id" FROM '
                        '"shop_fdw"."orders" WHERE (id > 1) WITH DATA')
    assert shown[-1].startswith('CREATE UNIQUE INDEX')


def test_maintain_role_exactly_one_and_only_from_17():
    idx = index_name(CopySpec(COPY, SRC))
    copy = existing(indexes=[(idx, ['id'])])
    assert plan(copy=copy, maintain_role=None).statements == []
    role = 'sched "x"'
    assert render_all(plan(copy=copy, maintain_role=role).statements) == [
        'GRANT MAINTAIN ON "shop"."orders" TO "sched ""x"""',
        'GRANT USAGE ON SCHEMA "shop" TO "sched ""x"""']
    granted = existing(indexes=[(idx, ['id'])], maintainers=['sched'])
    assert plan(copy=granted, maintain_role='sched', maintain_usage=['shop']).statements == []
    assert render_all(plan(copy=granted, maintain_role='other', maintain_usage=['shop']).statements) == [
        'GRANT MAINTAIN ON "shop"."orders" TO "other"', 'REVOKE MAINTAIN ON "shop"."orders" FROM "sched"']
    # none: MAINTAIN revoked, USAGE on the schema left (it opens no table)
    assert render_all(plan(copy=granted, maintain_role='').statements) == [
        'REVOKE MAINTAIN ON "shop"."orders" FROM "sched"']
    # a copy created again (its definition changed) has lost its grants
    changed = Relation(True, 'm', comment='tablesync.postgresql copy of old', maintainers=['sched'])
    assert render_all(plan(copy=changed, maintain_role='sched', maintain_usage=['shop']).statements)[-1] == \
        'GRANT MAINTAIN ON "shop"."orders" TO "sched"'
    with pytest.raises(PlanError, match='maintain_role needs PostgreSQL 17'):
        plan(copy=copy, maintain_role='sched', version_num=160000)
    # '' (none) works on any version
    assert plan(copy=copy, maintain_role='', version_num=150000).statements == []
