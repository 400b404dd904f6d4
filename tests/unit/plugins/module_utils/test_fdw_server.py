"""pg_fdw_server planner: extension, CREATE/ALTER/DROP SERVER, owner, comment."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.server import (
    ServerSpec, ServerState, plan_server, predicted_state)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all

HOSTILE = ['Mixed Case', 'with "quotes"', "semi;colon'; DROP TABLE x;--", 'ünïcødé ✓', 'x' * 63]

INSTALLED = dict(extension_schema='public', current_user='postgres')


def existing(**kw):
    state = dict(exists=True, fdw='postgres_fdw', owner='postgres',
                 options={'host': 'db1', 'port': '5432', 'dbname': 'shop'}, **INSTALLED)
    state.update(kw)
    return ServerState(**state)


def test_new_server_with_extension_in_schema():
    desired = ServerSpec('src', options={'host': 'db1', 'port': '5432'}, extension_schema='fdw',
                         comment='the source', owner='app')
    current = ServerState(schema_exists=False, current_user='postgres')
    assert render_all(plan_server(desired, current)) == [
        'CREATE SCHEMA "fdw"',
        'CREATE EXTENSION "postgres_fdw" SCHEMA "fdw"',
        'CREATE SERVER "src" FOREIGN DATA WRAPPER "postgres_fdw" OPTIONS '
        '("host" \'db1\', "port" \'5432\')',
        'ALTER SERVER "src" OWNER TO "app"',
        'COMMENT ON SERVER "src" IS \'the source\'',
    ]


def test_new_server_without_options_or_owner_change():
    current = ServerState(current_user='postgres', **{'extension_schema': 'public'})
    assert render_all(plan_server(ServerSpec('s', owner='postgres'), current)) == [
        'CREATE SERVER "s" FOREIGN DATA WRAPPER "postgres_fdw"']


def test_extension_is_moved_only_when_a_schema_is_asked_for():
    missing_schema = existing(schema_exists=False)
    assert render_all(plan_server(ServerSpec('src', options=missing_schema.options,
                                             extension_schema='fdw'), missing_schema)) == [
        'CREATE SCHEMA "fdw"', 'ALTER EXTENSION "postgres_fdw" SET SCHEMA "fdw"']
    state = existing(schema_exists=True)
    assert render_all(plan_server(ServerSpec('src', options=state.options,
                                             extension_schema='fdw'), state)) == [
        'ALTER EXTENSION "postgres_fdw" SET SCHEMA "fdw"']
    assert plan_server(ServerSpec('src', options=state.options), state) == []


def test_options_changed_in_place_add_set_drop():
    desired = ServerSpec('src', options={'host': 'db2', 'port': '5432', 'fetch_size': '10000'})
    current = existing()
    assert render_all(plan_server(desired, current)) == [
        'ALTER SERVER "src" OPTIONS (SET "host" \'db2\', ADD "fetch_size" \'10000\', '
        'DROP "dbname")']


def test_idempotent():
    current = existing(comment='c')
    assert plan_server(ServerSpec('src', options=dict(current.options), owner='postgres',
                                  comment='c'), current) == []


def test_boolean_option_spelled_differently_is_no_change():
    current = existing(options={'updatable': 'on'})
    assert plan_server(ServerSpec('src', options={'updatable': 'true'}), current) == []


def test_owner_and_comment_changes():
    current = existing(comment='old')
    assert render_all(plan_server(ServerSpec('src', options=current.options, owner='app',
                                             comment=''), current)) == [
        'ALTER SERVER "src" OWNER TO "app"', 'COMMENT ON SERVER "src" IS NULL']


def test_other_wrapper_is_refused():
    with pytest.raises(PlanError, match='uses the foreign-data wrapper file_fdw'):
        plan_server(ServerSpec('src'), existing(fdw='file_fdw'))


def test_drop_refuses_dependents_without_cascade():
    current = existing(mapping_count=2, table_count=5)
    with pytest.raises(PlanError, match='2 user mapping.* and 5 foreign table.*cascade: true'):
        plan_server(ServerSpec('src', state='absent'), current)
    assert render_all(plan_server(ServerSpec('src', state='absent', cascade=True), current)) == [
        'DROP SERVER "src" CASCADE']
    assert render_all(plan_server(ServerSpec('src', state='absent'), existing())) == [
        'DROP SERVER "src"']
    assert plan_server(ServerSpec('src', state='absent'), ServerState()) == []


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_names_are_identifiers(name):
    quoted = '"%s"' % name.replace('"', '""')
    statements = render_all(plan_server(
        ServerSpec(name, options={'host': name}, owner=name, extension_schema=name),
        ServerState(current_user='postgres', schema_exists=False)))
    assert statements == [
        'CREATE SCHEMA %s' % quoted,
        'CREATE EXTENSION "postgres_fdw" SCHEMA %s' % quoted,
        'CREATE SERVER %s FOREIGN DATA WRAPPER "postgres_fdw" OPTIONS ("host" \'%s\')'
        % (quoted, name.replace("'", "''")),
        'ALTER SERVER %s OWNER TO %s' % (quoted, quoted),
    ]


def test_predicted_state():
    current = existing()
    after = predicted_state(ServerSpec('src', options={'host': 'x'}, comment='c'), current)
    assert after.as_dict('src') == {'name': 'src', 'exists': True, 'owner': 'postgres',
                                    'comment': 'c', 'options': {'host': 'x'},
                                    'extension_schema': 'public'}
    assert predicted_state(ServerSpec('src', state='absent'), current).as_dict('src') == {
        'name': 'src', 'exists': False}
