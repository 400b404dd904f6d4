"""pg_scram_verifiers: which roles have no verifier to copy, and why."""
from ansible_collections.tablesync.postgresql.plugins.modules.pg_scram_verifiers import (
    unusable_roles)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import build_verifier


def test_every_unusable_role_named_with_its_reason_in_input_order():
    stored = {'ok': build_verifier('pw'), 'old': 'md5' + '0' * 32, 'none': None}
    assert unusable_roles(['gone', 'ok', 'old', 'none'], stored) == [
        'gone (no such role)', 'old (password not stored as SCRAM-SHA-256)',
        'none (no password)']
    assert unusable_roles(['ok'], stored) == []


def test_table_definitions_in_input_order_and_missing_named():
    from ansible_collections.tablesync.postgresql.plugins.modules.pg_table_definitions import (
        definitions)
    cols = [{'name': 'id', 'type': 'integer', 'not_null': True}]
    rows = [('sales', 'orders', cols, True), ('public', 'nope', [], False)]
    tables, missing = definitions(['sales.orders', 'nope'], rows)
    assert missing == ['nope']
    assert tables == [{'name': 'sales.orders', 'schema': 'sales', 'table': 'orders',
                       'columns': cols, 'foreign_table': {'name': 'orders',
                                                          'remote_schema': 'sales',
                                                          'columns': cols}}]
