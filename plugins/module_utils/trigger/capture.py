# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-table capture of pg_sync_trigger: a generated trigger function and the backfill.

Each synced table gets its own trigger function ``tablesync.capture_<table id>()`` (SECURITY
DEFINER, owned by the schema's owner role, settings pinned). It appends one change per row to
``tablesync.trigger_changes`` with:

* ``row``: the synced columns of the new row (INSERT, UPDATE) and ``key``: the key columns of
  the old row (UPDATE, DELETE; all synced columns for a keyless table), as ``text[]``;
* each value made by the column type's own output function, called directly
  (``pg_catalog.textin(<typoutput>(NEW.col))``): no cast (which a type owner could define),
  no ``to_jsonb`` and nothing else that runs user-defined code as the definer. NULL stays a
  NULL element. Only the synced columns ever enter the queue.

The output functions and identifiers come from the catalog and are quoted here exactly as
PostgreSQL's ``quote_ident`` would force-quote them (``statements.quote_ident``); the body is
then sent as one literal. The same expressions serve the backfill, which the module runs in one
transaction per table with the table locked against writes (``BackfillStatement``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, bind, quote_ident)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

CAPTURE_PREFIX = 'capture_'
CAPTURE_NAME_RE = re.compile(r'^capture_(\d+)$')


def capture_name(table_id):
    return '%s%d' % (CAPTURE_PREFIX, table_id)


def capture_comment(table_id):
    return '%s capture of table id %d' % (q.COMMENT, table_id)


def value_expression(record, column, output):
    """``pg_catalog.textin(<typoutput>(record.column))``: the column's exact text form."""
    schema, function = output
    return 'pg_catalog.textin(%s.%s(%s.%s))' % (quote_ident(schema), quote_ident(function),
                                                record, quote_ident(column))


def values_array(record, columns, outputs):
    return 'ARRAY[%s]::pg_catalog.text[]' % ', '.join(
        value_expression(record, c, outputs[c]) for c in columns)


def _literal(text):
    return "'%s'" % text.replace("'", "''")


def capture_body(set_name, mode, table_id, source, columns, key_columns, outputs):
    """The PL/pgSQL body of ``capture_<table_id>``; ``outputs``: column -> (schema, function)."""
    identity = list(key_columns) or list(columns)
    head = (q.HEADER + '-- Capture of %s.%s for sync set %s (table id %d, mode %s, %s).\n'
            % (quote_ident(source[0]), quote_ident(source[1]), quote_ident(set_name), table_id,
               mode, 'key %s' % ', '.join(quote_ident(k) for k in key_columns)
               if key_columns else 'keyless: rows identified by all synced columns'))
    insert = 'INSERT INTO tablesync.trigger_changes (set_name, table_id, op, key, row)\n    VALUES'
    common = '%s, %d' % (_literal(set_name), table_id)
    returning = '\n    RETURNING id INTO v_id' if mode == 'immediate' else ''
    register = ('\n  PERFORM tablesync._register_commit(%s, v_id);' % _literal(set_name)
                if mode == 'immediate' else '')
    lines = [
        'DECLARE',
        '  v_id bigint;',
        'BEGIN',
        "  IF TG_OP = 'INSERT' THEN",
        "    %s (%s, 'I', NULL,\n            %s)%s;" % (
            insert, common, values_array('NEW', columns, outputs), returning),
        "  ELSIF TG_OP = 'UPDATE' THEN",
        "    %s (%s, 'U',\n            %s,\n            %s)%s;" % (
            insert, common, values_array('OLD', identity, outputs),
            values_array('NEW', columns, outputs), returning),
        '  ELSE',
        "    %s (%s, 'D',\n            %s, NULL)%s;" % (
            insert, common, values_array('OLD', identity, outputs), returning),
        '  END IF;%s' % register,
        '  RETURN NULL;',
        'END',
    ]
    return head + '\n'.join(lines) + '\n'


def capture_statement(table_id, body):
    """``CREATE OR REPLACE FUNCTION tablesync.capture_<id>()`` (definer, settings pinned)."""
    return Statement(sql.SQL(
        'CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER {} '
        'AS {}').format(sql.Identifier(q.SCHEMA, capture_name(table_id)), q.settings_clause(),
                        sql.Literal(body)))


def capture_signature(table_id):
    return sql.SQL('{}()').format(sql.Identifier(q.SCHEMA, capture_name(table_id)))


def capture_statements(table_id, body, current, owner):
    """Create or replace the capture function when it differs, own it, revoke PUBLIC."""
    statements = []
    signature = capture_signature(table_id)
    if current is None or current.source != body or not current.definer \
            or current.config != q.pinned_settings():
        statements.append(capture_statement(table_id, body))
    if current is None or current.owner != owner:
        statements.append(Statement(sql.SQL('ALTER FUNCTION {} OWNER TO {}').format(
            signature, sql.Identifier(owner))))
    if current is None or current.public_execute:
        statements.append(Statement(sql.SQL('REVOKE ALL ON FUNCTION {} FROM PUBLIC').format(
            signature)))
    if current is None or current.comment != capture_comment(table_id):
        statements.append(Statement(sql.SQL('COMMENT ON FUNCTION {} IS %s').format(signature),
                                    (capture_comment(table_id),)))
    return statements


def drop_capture_statement(table_id):
    return Statement(sql.SQL('DROP FUNCTION IF EXISTS {}').format(capture_signature(table_id)))


class BackfillStatement(Statement):
    """Queues a table's current rows, in its own transaction, as the first changes to apply.

    With the table locked against writes (SHARE), the table's queued changes are replaced by a
    TRUNCATE of the target followed by every row (under the pinned settings), so the target
    becomes exactly the source at that moment and the changes made after it follow in order;
    keyless tables and duplicate rows included. Writers wait while the rows are read; readers
    do not. ``result``: the number of rows queued.
    """

    __slots__ = ('result', 'steps')

    def __init__(self, set_name, table_id, source, partitioned, columns, outputs):
        table = sql.Identifier(*source)
        select = sql.SQL('SELECT %s, %s, {}, {} FROM {}{} AS s').format(
            sql.Literal('I'), sql.SQL(values_array('s', columns, outputs)),
            sql.SQL('' if partitioned else 'ONLY '), table)
        self.steps = [Statement(sql.SQL('SET LOCAL {} = {}').format(
            sql.Identifier(name), sql.Literal(value))) for name, value in q.PINNED]
        self.steps += [
            Statement(sql.SQL('LOCK TABLE {} IN SHARE MODE').format(table)),
            Statement(sql.SQL('DELETE FROM tablesync.trigger_changes WHERE set_name = %s '
                              'AND table_id = %s'), (set_name, table_id)),
            Statement(sql.SQL("INSERT INTO tablesync.trigger_changes (set_name, table_id, op) "
                              "VALUES (%s, %s, 'T')"), (set_name, table_id)),
            Statement(sql.SQL('INSERT INTO tablesync.trigger_changes (set_name, table_id, op, '
                              'row) {}').format(select), (set_name, table_id)),
            Statement(sql.SQL('UPDATE tablesync.trigger_tables SET backfilled_at = '
                              'pg_catalog.now() WHERE id = %s'), (table_id,)),
        ]
        shown = sql.SQL('; ').join(s.query if not s.params else bind(s) for s in self.steps)
        Statement.__init__(self, shown, (), autocommit=True)
        self.result = None

    def execute(self, cursor):
        cursor.execute('BEGIN')
        try:
            for step in self.steps:
                cursor.execute(bind(step))
                if step is self.steps[-2]:
                    self.result = cursor.rowcount
            cursor.execute('COMMIT')
        except Exception:
            try:
                cursor.execute('ROLLBACK')
            except Exception:  # the connection is gone; the server rolled back
                pass
            raise
