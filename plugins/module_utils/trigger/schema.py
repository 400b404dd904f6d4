# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trigger method's schema: names, storage tables (and their v1 upgrade), the ``Routine``
model with its pinned settings, and the user-mapping creation that keeps passwords out of
statement text. The routine bodies themselves are in ``routines.py`` (which re-exports all
of this, so the planner and the module read everything as ``routines.<NAME>``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.text_forms import (
    TEXT_FORM_SETTINGS)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None


VERSION = 3
SCHEMA = 'tablesync'
OWNER_DEFAULT = 'tablesync_trigger_owner'
MARKER = 'tablesync.postgresql sync_trigger'
COMMENT = '%s v%d' % (MARKER, VERSION)
HEADER = '-- %s v%d (installed by the Ansible collection; do not edit)\n' % (MARKER, VERSION)
DBLINK_PLACEHOLDER = '@dblink@'

SETS_TABLE = 'trigger_sets'
TABLES_TABLE = 'trigger_tables'
CHANGES_TABLE = 'trigger_changes'
COMMITS_TABLE = 'trigger_commits'
COMMIT_TRIGGER = 'commit_immediate'
CHANGES_SEQUENCE = 'trigger_changes_id_seq'

# The settings under which values are turned into text (capture, backfill) and back into values
# (the target session): every setting that changes a built-in type's text form.
PINNED = TEXT_FORM_SETTINGS
SEARCH_PATH = 'pg_catalog, pg_temp'

STORAGE = (
    (SETS_TABLE, '''CREATE TABLE tablesync.trigger_sets (
    name text PRIMARY KEY,
    server text NOT NULL,
    server_managed boolean NOT NULL DEFAULT false,
    mode text NOT NULL CHECK (mode IN ('queued', 'immediate')),
    batch_size integer NOT NULL CHECK (batch_size > 0),
    last_error text,
    last_error_at timestamptz,
    failed_change bigint,
    error_count bigint NOT NULL DEFAULT 0
)'''),
    (TABLES_TABLE, '''CREATE TABLE tablesync.trigger_tables (
    id integer PRIMARY KEY,
    set_name text NOT NULL REFERENCES tablesync.trigger_sets (name),
    source_schema text NOT NULL,
    source_table text NOT NULL,
    target_schema text NOT NULL,
    target_table text NOT NULL,
    key_columns text[] NOT NULL,
    columns text[] NOT NULL,
    backfilled_at timestamptz,
    numbers smallint[],
    follow boolean NOT NULL DEFAULT false,
    UNIQUE (set_name, source_schema, source_table)
)'''),
    (CHANGES_TABLE, '''CREATE TABLE tablesync.trigger_changes (
    id bigserial PRIMARY KEY,
    set_name text NOT NULL,
    table_id integer NOT NULL,
    op "char" NOT NULL,
    key text[],
    row text[],
    txid bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    ts timestamptz NOT NULL DEFAULT pg_catalog.now()
)'''),
    (COMMITS_TABLE, '''CREATE TABLE tablesync.trigger_commits (
    set_name text NOT NULL,
    txid bigint NOT NULL,
    first_id bigint NOT NULL,
    PRIMARY KEY (set_name, txid)
)'''),
)

COMMIT_TRIGGER_DDL = ('CREATE CONSTRAINT TRIGGER commit_immediate AFTER INSERT ON '
                      'tablesync.trigger_commits DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                      'EXECUTE FUNCTION tablesync.commit_immediate()')

# Upgrade of the storage written by routines v1 (jsonb payloads, a custom-setting flag for
# immediate mode). The v1 queue is applied by the v1 routines before these run (see the
# planner), so the payload columns are empty when they are replaced.
UPGRADE_V1 = (
    'ALTER TABLE tablesync.trigger_sets ADD COLUMN IF NOT EXISTS last_error text, '
    'ADD COLUMN IF NOT EXISTS last_error_at timestamptz, '
    'ADD COLUMN IF NOT EXISTS failed_change bigint, '
    'ADD COLUMN IF NOT EXISTS error_count bigint NOT NULL DEFAULT 0',
    'ALTER TABLE tablesync.trigger_changes ALTER COLUMN key TYPE text[] USING NULL, '
    'ALTER COLUMN row TYPE text[] USING NULL, '
    'ALTER COLUMN txid SET DEFAULT pg_catalog.txid_current(), '
    'ALTER COLUMN ts SET DEFAULT pg_catalog.now()',
    'DROP TABLE tablesync.trigger_commits',
)


class Routine(object):
    """One function or procedure of the schema.

    ``arguments``: the declaration; ``identity``: what ``pg_get_function_identity_arguments()``
    prints for it; ``result``: what ``pg_get_function_result()`` prints (None: procedure).
    ``definer``: SECURITY DEFINER (run as the schema's owner role), always with
    ``search_path = pg_catalog, pg_temp`` and the ``PINNED`` settings. Invoker routines (the
    flush procedure, which must COMMIT and so cannot have settings) qualify every function,
    operator and type instead.
    """

    def __init__(self, name, arguments, identity, result, language, body, definer=False,
                 attributes=''):
        self.name = name
        self.arguments = arguments
        self.identity = identity
        self.result = result
        self.language = language
        self.template = HEADER + body.strip('\n') + '\n'
        self.definer = definer
        self.attributes = attributes

    @property
    def kind(self):
        return 'p' if self.result is None else 'f'

    @property
    def key(self):
        return (self.name, self.identity)

    def body(self, dblink_schema):
        """The body with the quoted dblink schema (``quote_ident()``) substituted."""
        return self.template.replace(DBLINK_PLACEHOLDER, dblink_schema)

    def signature(self):
        """``tablesync.name(identity)`` as a composable, for COMMENT/REVOKE/DROP ROUTINE."""
        return sql.SQL('{}({})').format(sql.Identifier(SCHEMA, self.name), sql.SQL(self.identity))

    def settings(self):
        """The proconfig entries the routine must have (empty for invoker routines)."""
        return pinned_settings() if self.definer else []

    def create_statement(self, dblink_schema):
        """``CREATE OR REPLACE FUNCTION|PROCEDURE ...`` as a composable (body as a literal)."""
        if self.result is None:
            head = sql.SQL('CREATE OR REPLACE PROCEDURE {}({})').format(
                sql.Identifier(SCHEMA, self.name), sql.SQL(self.arguments))
        else:
            head = sql.SQL('CREATE OR REPLACE FUNCTION {}({}) RETURNS {}').format(
                sql.Identifier(SCHEMA, self.name), sql.SQL(self.arguments), sql.SQL(self.result))
        parts = [head, sql.SQL('LANGUAGE {}').format(sql.SQL(self.language))]
        if self.attributes:
            parts.append(sql.SQL(self.attributes))
        if self.definer:
            parts.append(sql.SQL('SECURITY DEFINER'))
            parts.append(settings_clause())
        parts.append(sql.SQL('AS {}').format(sql.Literal(self.body(dblink_schema))))
        return sql.SQL(' ').join(parts)


def pinned_settings():
    """proconfig of every definer routine and capture function."""
    return ['search_path=%s' % SEARCH_PATH] + ['%s=%s' % (k, v) for k, v in PINNED]


def settings_clause():
    parts = [sql.SQL('SET search_path = %s' % SEARCH_PATH)]
    for name, value in PINNED:
        parts.append(sql.SQL('SET {} = {}').format(sql.Identifier(name), sql.Literal(value)))
    return sql.SQL(' ').join(parts)


def remote_settings_sql():
    """What the target session runs first: the same text forms as the source, then BEGIN."""
    return '; '.join(["SET %s = '%s'" % (k, v) for k, v in PINNED] + ['BEGIN'])


def _sql_string(text):
    return "'%s'" % text.replace("'", "''")


# Creates a user mapping whose option values (the password) arrive by COPY into a temporary
# table, so neither the statement text (server log, pg_stat_activity) nor an error context
# contains them: the EXECUTE runs inside the block and a failure is re-raised without context.
SECRET_ARGS_TABLE = 'tablesync_mapping_args'
SECRET_ARGS_DDL = ('CREATE TEMPORARY TABLE tablesync_mapping_args '
                   '(n integer NOT NULL, name text NOT NULL, value text NOT NULL) ON COMMIT DROP')
SECRET_ARGS_COPY = ('COPY pg_temp.tablesync_mapping_args (n, name, value) FROM STDIN '
                    'WITH (FORMAT csv)')
SECRET_ARGS_DROP = 'DROP TABLE pg_temp.tablesync_mapping_args'
CREATE_MAPPING_BLOCK = '''DO $tablesync$
DECLARE
  v_role text;
  v_server text;
  v_options text;
BEGIN
  SELECT a.value INTO v_role FROM pg_temp.tablesync_mapping_args AS a WHERE a.n = 0;
  SELECT a.value INTO v_server FROM pg_temp.tablesync_mapping_args AS a WHERE a.n = 1;
  SELECT pg_catalog.string_agg(pg_catalog.format('%I %L', a.name, a.value), ', ' ORDER BY a.n)
    INTO v_options FROM pg_temp.tablesync_mapping_args AS a WHERE a.n > 1;
  EXECUTE pg_catalog.format('CREATE USER MAPPING FOR %I SERVER %I OPTIONS (%s)',
                            v_role, v_server, v_options);
EXCEPTION WHEN OTHERS THEN
  RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM;
END
$tablesync$'''
