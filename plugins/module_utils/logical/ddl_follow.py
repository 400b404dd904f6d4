# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_schema_follow: the objects of ``ddl_follow_sql`` wanted vs present -> statements.

``plan(side, set_name, state, current, tables=(), replication_role=None)`` is pure: ``current``
is a ``FollowState`` read by the module in one query.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import publication_name
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import (
    APPLY_TRIGGER, EVENT_TRIGGER, FUNCTIONS, MONITOR_ROLE, QUEUE_DDL, SCHEMA, SETTINGS, SIDES)


class FollowState(object):
    """What the database has: ``functions`` maps a name to (prosrc, security definer, PUBLIC may
    execute); ``event_trigger``/``apply_trigger`` hold the enabled flag (None: missing);
    ``unbaselined``: (schema, table) of the set's tables without a row in the queue, or
    (schema, table, columns) with the set's column list of the table (the baseline then holds
    those columns only, also before the publication has the table);
    ``queues``: names of every queue table of the schema (other sets' too)."""

    def __init__(self, schema=False, functions=None, queue=False, queues=(), event_trigger=None,
                 apply_trigger=None, unbaselined=(), role_can_read=True, monitor_ok=False):
        self.schema = schema
        self.functions = functions or {}
        self.queue = queue
        self.queues = set(queues)
        self.event_trigger = event_trigger
        self.apply_trigger = apply_trigger
        self.unbaselined = [tuple(t) for t in unbaselined]
        self.role_can_read = role_can_read
        # pg_monitor may call status() (pg_sync_info, check.yml, the exporter)
        self.monitor_ok = monitor_ok


def queue_ident(set_name):
    return sql.Identifier(SCHEMA, set_name)


def plan(side, set_name, state, current, replication_role=None):
    """-> (statements, changes): ``changes`` names each object created, replaced or dropped.
    ``side``: source, target (a logical set's) or trigger_target (no queue; ``replication_role``
    is then the trigger sets' target login, which may call ``follow_table``); ``set_name`` is
    None for trigger_target."""
    if state == 'absent':
        return _plan_absent(set_name, current)
    statements, changes = [], []
    schema = sql.Identifier(SCHEMA)
    if not current.schema:
        statements += [Statement(sql.SQL('CREATE SCHEMA {}').format(schema)),
                       Statement(sql.SQL('REVOKE ALL ON SCHEMA {} FROM PUBLIC').format(schema))]
        changes.append('schema %s' % SCHEMA)
    for name in SIDES[side]:
        args, returns, language, volatility, body = FUNCTIONS[name]
        if current.functions.get(name) == (body, True, False):
            continue
        statements.append(function_statement(name, args, returns, language, volatility, body))
        statements.append(Statement(sql.SQL('REVOKE ALL ON FUNCTION {} FROM PUBLIC').format(
            sql.Identifier(SCHEMA, name))))
        changes.append('function %s.%s' % (SCHEMA, name))
    if 'status' in SIDES[side] and not current.monitor_ok:
        statements += [
            Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(schema, sql.Identifier(MONITOR_ROLE))),
            Statement(sql.SQL('GRANT EXECUTE ON FUNCTION {}() TO {}').format(
                sql.Identifier(SCHEMA, 'status'), sql.Identifier(MONITOR_ROLE)))]
        changes.append('EXECUTE on %s.status for %s' % (SCHEMA, MONITOR_ROLE))
    if side == 'trigger_target':
        return statements + _trigger_target_statements(current, replication_role, changes), changes
    queue = queue_ident(set_name)
    if not current.queue:
        identity = 'GENERATED ALWAYS AS IDENTITY' if side == 'source' else ''
        statements += [Statement(sql.SQL(QUEUE_DDL).format(queue=queue, identity=sql.SQL(identity))),
                       Statement(sql.SQL('REVOKE ALL ON TABLE {} FROM PUBLIC').format(queue))]
        changes.append('queue %s.%s' % (SCHEMA, set_name))
    if side == 'source':
        statements += _source_statements(set_name, current, replication_role, changes)
    else:
        statements += _target_statements(set_name, current, changes)
    return statements, changes


def function_statement(name, args, returns, language, volatility, body):
    return Statement(sql.SQL(
        'CREATE OR REPLACE FUNCTION {}(' + args + ') RETURNS ' + returns + ' LANGUAGE ' + language
        + ' ' + volatility + ' SECURITY DEFINER ' + SETTINGS + ' AS {}').format(
            sql.Identifier(SCHEMA, name), sql.Literal(body)))


def _source_statements(set_name, current, role, changes):
    statements = []
    trigger = sql.Identifier(EVENT_TRIGGER)
    if current.event_trigger is None:
        statements.append(Statement(sql.SQL(
            "CREATE EVENT TRIGGER {} ON ddl_command_end WHEN TAG IN ('ALTER TABLE') "
            'EXECUTE FUNCTION {}()').format(trigger, sql.Identifier(SCHEMA, 'capture'))))
        changes.append('event trigger %s' % EVENT_TRIGGER)
    elif current.event_trigger != 'O':
        statements.append(Statement(sql.SQL('ALTER EVENT TRIGGER {} ENABLE').format(trigger)))
        changes.append('event trigger %s enabled' % EVENT_TRIGGER)
    if role and not current.role_can_read:
        statements += [
            Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(sql.Identifier(SCHEMA), sql.Identifier(role))),
            Statement(sql.SQL('GRANT SELECT ON TABLE {} TO {}').format(queue_ident(set_name), sql.Identifier(role)))]
        changes.append('SELECT on the queue for %s' % role)
    if current.unbaselined:
        statements.append(Statement(sql.SQL(
            'INSERT INTO {queue} (table_schema, table_name, columns, captured_at) '
            'SELECT t.nsp, t.rel, {columns_of}(c.oid, CASE WHEN pg_catalog.jsonb_typeof(t.cols) = \'array\' '
            '         THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(t.cols))::name[] ELSE pt.attnames END), '
            '       pg_catalog.clock_timestamp() '
            '  FROM ROWS FROM (pg_catalog.unnest({schemas}::text[]), pg_catalog.unnest({names}::text[]), '
            '                  pg_catalog.jsonb_array_elements({columns}::jsonb)) WITH ORDINALITY AS t(nsp, rel, cols, ord) '
            '  JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp '
            '  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel '
            '  LEFT JOIN pg_catalog.pg_publication_tables pt '
            '         ON pt.pubname = {publication} AND pt.schemaname = t.nsp AND pt.tablename = t.rel '
            ' ORDER BY t.ord').format(
                queue=queue_ident(set_name), columns_of=sql.Identifier(SCHEMA, 'columns_of'),
                schemas=sql.Literal([t[0] for t in current.unbaselined]),
                names=sql.Literal([t[1] for t in current.unbaselined]),
                columns=sql.Literal(json.dumps([list(t[2]) if len(t) > 2 and t[2] else None
                                                for t in current.unbaselined])),
                publication=sql.Literal(publication_name(set_name)))))
        changes.append('baseline of %d table(s)' % len(current.unbaselined))
    return statements


def _target_statements(set_name, current, changes):
    trigger = sql.Identifier(APPLY_TRIGGER)
    queue = queue_ident(set_name)
    statements = []
    if current.apply_trigger is None:
        statements.append(Statement(sql.SQL(
            'CREATE TRIGGER {} AFTER INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()').format(
                trigger, queue, sql.Identifier(SCHEMA, 'apply'))))
    if current.apply_trigger != 'A':
        # the subscription's apply worker runs with session_replication_role = replica
        statements.append(Statement(sql.SQL('ALTER TABLE {} ENABLE ALWAYS TRIGGER {}').format(queue, trigger)))
        changes.append('trigger %s (enabled always)' % APPLY_TRIGGER)
    return statements


def _trigger_target_statements(current, role, changes):
    """A trigger set's target login may call follow_table (for tables it may write)."""
    if not role or current.role_can_read:
        return []
    changes.append('EXECUTE on %s.follow_table for %s' % (SCHEMA, role))
    return [Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(sql.Identifier(SCHEMA), sql.Identifier(role))),
            Statement(sql.SQL('GRANT EXECUTE ON FUNCTION {}(text, jsonb, jsonb) TO {}').format(
                sql.Identifier(SCHEMA, 'follow_table'), sql.Identifier(role)))]


def _plan_absent(set_name, current):
    statements, changes = [], []
    if set_name and current.queue:
        statements.append(Statement(sql.SQL('DROP TABLE {}').format(queue_ident(set_name))))
        changes.append('queue %s.%s dropped' % (SCHEMA, set_name))
    if current.schema and not (current.queues - set([set_name])):  # the last set of the database
        if current.event_trigger is not None:
            statements.append(Statement(sql.SQL('DROP EVENT TRIGGER {}').format(sql.Identifier(EVENT_TRIGGER))))
            changes.append('event trigger %s dropped' % EVENT_TRIGGER)
        statements.append(Statement(sql.SQL('DROP SCHEMA {} CASCADE').format(sql.Identifier(SCHEMA))))
        changes.append('schema %s dropped' % SCHEMA)
    return statements, changes
