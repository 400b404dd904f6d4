"""plan_databases: CREATE DATABASE for the missing target databases only, each once, quoted,
outside a transaction block, never a drop."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.databases import plan_databases


def test_only_the_missing_ones_each_once_in_order():
    statements = plan_databases(['shop_rep', 'Odd "db"', 'shop_live', 'shop_rep'], ['shop_live'])
    assert render_all(statements) == ['CREATE DATABASE "shop_rep"', 'CREATE DATABASE "Odd ""db"""']
    assert all(s.autocommit for s in statements)


def test_owner_and_nothing_to_do():
    assert render_all(plan_databases(['a'], [], owner='tablesync_admin')) == [
        'CREATE DATABASE "a" OWNER "tablesync_admin"']
    assert plan_databases(['a', 'b'], ['b', 'a', 'c']) == []


@pytest.mark.parametrize('name', ['', 'x' * 64, 'nul\x00'])
def test_a_name_postgresql_would_refuse_or_truncate_fails_first(name):
    with pytest.raises(TablesyncError):
        plan_databases([name], [])
