# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server-side part of pg_sync_trigger: storage tables and PL/pgSQL routines, as data.

Everything lives in the schema ``tablesync`` of the source database and is shared by all
trigger sync sets of that database:

* ``trigger_sets`` (one row per set: foreign server, mode, batch size), ``trigger_tables`` (one
  row per source table: target table, key columns, synced columns, backfill time),
  ``trigger_changes`` (the change log: ``id bigserial``, ``op``, ``key jsonb``, ``row jsonb``,
  ``txid``, ``ts``) and ``trigger_commits`` (immediate mode: one row per transaction and set,
  whose deferred constraint trigger applies the transaction's changes before it commits).
* ``capture_row()`` / ``capture_truncate()``: the triggers on the source tables. Arguments:
  set name, mode, table id, then (rows only) the key columns.
* ``flush(set)`` (procedure, one remote transaction and one local commit per batch),
  ``drain(set)`` (the same inside the caller's transaction), ``backfill(set, table id)``,
  ``verify_target(set)``; internal helpers start with ``_``.

Rows travel as ``jsonb`` (``to_jsonb(NEW)``) and are rebuilt on the target with
``jsonb_populate_recordset(NULL::target_table, payload)``, so every type with a text form
arrives unchanged. Every remote statement is built with ``format()`` and ``%I``/``%L``; the
target is reached with ``dblink_connect(name, foreign_server)``, so no password is in any
routine body. The bodies are constants: ``VERSION`` is embedded in each body's first line and in
each routine's comment, and the module replaces a routine whose body differs (an upgrade).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

VERSION = 1
SCHEMA = 'tablesync'
MARKER = 'tablesync.postgresql sync_trigger'
COMMENT = '%s v%d' % (MARKER, VERSION)
HEADER = '-- %s v%d (installed by the Ansible collection; do not edit)\n' % (MARKER, VERSION)

SETS_TABLE = 'trigger_sets'
TABLES_TABLE = 'trigger_tables'
CHANGES_TABLE = 'trigger_changes'
COMMITS_TABLE = 'trigger_commits'
COMMIT_TRIGGER = 'commit_immediate'
CHANGES_SEQUENCE = 'trigger_changes_id_seq'

# Settings of every SECURITY DEFINER routine besides search_path (pg_catalog first, then the
# schema of dblink, pg_temp last): floats in to_jsonb() output must round-trip exactly.
EXTRA_SETTINGS = ('extra_float_digits=3',)

STORAGE = (
    (SETS_TABLE, '''CREATE TABLE tablesync.trigger_sets (
    name text PRIMARY KEY,
    server text NOT NULL,
    server_managed boolean NOT NULL DEFAULT false,
    mode text NOT NULL CHECK (mode IN ('queued', 'immediate')),
    batch_size integer NOT NULL CHECK (batch_size > 0)
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
    UNIQUE (set_name, source_schema, source_table)
)'''),
    (CHANGES_TABLE, '''CREATE TABLE tablesync.trigger_changes (
    id bigserial PRIMARY KEY,
    set_name text NOT NULL,
    table_id integer NOT NULL,
    op "char" NOT NULL,
    key jsonb,
    row jsonb,
    txid bigint NOT NULL DEFAULT txid_current(),
    ts timestamptz NOT NULL DEFAULT now()
)'''),
    (COMMITS_TABLE, '''CREATE TABLE tablesync.trigger_commits (
    set_name text NOT NULL,
    first_id bigint NOT NULL
)'''),
)

COMMIT_TRIGGER_DDL = ('CREATE CONSTRAINT TRIGGER commit_immediate AFTER INSERT ON '
                      'tablesync.trigger_commits DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                      'EXECUTE FUNCTION tablesync.commit_immediate()')


class Routine(object):
    """One function or procedure of the schema.

    ``arguments``: the declaration; ``identity``: what ``pg_get_function_identity_arguments()``
    prints for it; ``result``: what ``pg_get_function_result()`` prints (None: procedure).
    ``definer``: SECURITY DEFINER, with a fixed search_path (and EXTRA_SETTINGS) unless
    ``pinned`` is False: a routine run for every row cannot afford the settings' save and
    restore, so its body qualifies every function, operator and type with ``pg_catalog``.
    """

    def __init__(self, name, arguments, identity, result, language, body, definer=False,
                 attributes='', pinned=True):
        self.name = name
        self.arguments = arguments
        self.identity = identity
        self.result = result
        self.language = language
        self.body = HEADER + body.strip('\n') + '\n'
        self.definer = definer
        self.attributes = attributes
        self.pinned = definer and pinned

    @property
    def kind(self):
        return 'p' if self.result is None else 'f'

    @property
    def key(self):
        return (self.name, self.identity)

    def signature(self):
        """``tablesync.name(identity)`` as a composable, for COMMENT/REVOKE/DROP ROUTINE."""
        return sql.SQL('{}({})').format(sql.Identifier(SCHEMA, self.name), sql.SQL(self.identity))

    def settings(self, search_path_schema):
        """The proconfig entries the routine must have (empty for invoker routines)."""
        if not self.pinned:
            return []
        return [search_path_setting(search_path_schema)] + list(EXTRA_SETTINGS)

    def create_statement(self, search_path_schema):
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
        if self.pinned:
            parts.append(sql.SQL('SET search_path = pg_catalog, {}, pg_temp')
                         .format(sql.Identifier(search_path_schema)))
            for setting in EXTRA_SETTINGS:
                name, _sep, value = setting.partition('=')
                parts.append(sql.SQL('SET {} = {}').format(sql.Identifier(name), sql.Literal(value)))
        parts.append(sql.SQL('AS {}').format(sql.Literal(self.body)))
        return sql.SQL(' ').join(parts)


def search_path_setting(schema):
    """The proconfig entry of ``SET search_path = pg_catalog, <schema>, pg_temp``.

    PostgreSQL stores list elements as ``quote_ident()`` prints them; the module gets the quoted
    schema name from the server (catalog query), so this only assembles the entry.
    """
    return 'search_path=pg_catalog, %s, pg_temp' % schema


_KEY_OF = Routine('_key_of', 'p_row jsonb, p_columns text[]', 'p_row jsonb, p_columns text[]',
                  'jsonb', 'sql', '''
-- The key of a row: the object of its key columns.
SELECT pg_catalog.jsonb_object_agg(k.name, p_row OPERATOR(pg_catalog.->) k.name)
  FROM pg_catalog.unnest(p_columns) AS k(name)
''', attributes='IMMUTABLE')

_FAILURE_HINT = Routine('_failure_hint', 'p_immediate boolean', 'p_immediate boolean', 'text',
                        'sql', '''
SELECT CASE WHEN p_immediate
  THEN 'The sync set uses mode immediate: changes are applied on the target before the source '
       'transaction commits, so source transactions fail while the target is unreachable or '
       'rejects them. Mode queued keeps source writes working and applies the changes once the '
       'target is back.'
  ELSE 'The changes stay queued in tablesync.trigger_changes; the next flush applies them once '
       'the target accepts them.'
END
''', attributes='IMMUTABLE')

_QUOTED_LIST = Routine('_quoted_list', 'p_names text[], p_template text, p_separator text',
                       'p_names text[], p_template text, p_separator text', 'text', 'sql', '''
-- Each name formatted with a template of %1$I placeholders, joined with a separator.
SELECT pg_catalog.string_agg(pg_catalog.format(p_template, n.name), p_separator
                             ORDER BY n.position)
  FROM pg_catalog.unnest(p_names) WITH ORDINALITY AS n(name, position)
''', attributes='IMMUTABLE')

_UPSERT_SQL = Routine('_upsert_sql', 'p_table tablesync.trigger_tables, p_rows jsonb',
                      'p_table tablesync.trigger_tables, p_rows jsonb', 'text', 'sql', '''
-- INSERT ... ON CONFLICT (key) DO UPDATE of a JSON array of rows, run on the target: the rows
-- are rebuilt there with the target table's own column types.
SELECT pg_catalog.format(
         'INSERT INTO %1$I.%2$I (%3$s) SELECT %3$s '
         'FROM pg_catalog.jsonb_populate_recordset(NULL::%1$I.%2$I, %4$L) ON CONFLICT (%5$s) DO %6$s',
         p_table.target_schema, p_table.target_table,
         tablesync._quoted_list(p_table.columns, '%1$I', ', '), p_rows,
         tablesync._quoted_list(p_table.key_columns, '%1$I', ', '),
         CASE WHEN cardinality(u.columns) = 0 THEN 'NOTHING'
              ELSE pg_catalog.format('UPDATE SET %s',
                     tablesync._quoted_list(u.columns, '%1$I = EXCLUDED.%1$I', ', ')) END)
  FROM (SELECT ARRAY(SELECT c FROM pg_catalog.unnest(p_table.columns) AS c
                      WHERE c <> ALL (p_table.key_columns)) AS columns) AS u
''', attributes='IMMUTABLE')

_DELETE_SQL = Routine('_delete_sql', 'p_table tablesync.trigger_tables, p_keys jsonb',
                      'p_table tablesync.trigger_tables, p_keys jsonb', 'text', 'sql', '''
-- DELETE of the rows whose keys are in a JSON array of key objects, run on the target.
SELECT pg_catalog.format(
         'DELETE FROM %1$I.%2$I AS t '
         'USING pg_catalog.jsonb_populate_recordset(NULL::%1$I.%2$I, %3$L) AS d WHERE %4$s',
         p_table.target_schema, p_table.target_table, p_keys,
         tablesync._quoted_list(p_table.key_columns, 't.%1$I = d.%1$I', ' AND '))
''', attributes='IMMUTABLE')

_TRUNCATE_SQL = Routine('_truncate_sql', 'p_table tablesync.trigger_tables',
                        'p_table tablesync.trigger_tables', 'text', 'sql', '''
SELECT pg_catalog.format('TRUNCATE %I.%I', p_table.target_schema, p_table.target_table)
''', attributes='IMMUTABLE')

_SEGMENTS = Routine(
    '_segments', 'p_ids bigint[]', 'p_ids bigint[]',
    'TABLE(seg_table integer, seg_truncate boolean, seg_deletes jsonb, seg_upserts jsonb)',
    'sql', '''
-- The changes p_ids as the remote work to do, in order: runs of consecutive changes of one
-- table (a TRUNCATE is a run of its own), each reduced to the last effect per key: the keys to
-- delete and the rows to upsert. An UPDATE that changes the key deletes the old key.
WITH entries AS (
    SELECT c.id, c.table_id, c.op, c.key, c.row,
           lag(c.table_id) OVER (ORDER BY c.id) AS prev_table,
           lag(c.op) OVER (ORDER BY c.id) AS prev_op
      FROM tablesync.trigger_changes AS c
     WHERE c.id = ANY (p_ids)
), runs AS (
    SELECT e.*, count(*) FILTER (WHERE e.op = 'T' OR e.prev_op = 'T'
                                    OR e.prev_table IS DISTINCT FROM e.table_id)
                      OVER (ORDER BY e.id) AS run
      FROM entries AS e
), keyed AS (
    SELECT r.run, r.id, r.table_id, r.op, r.key AS old_key, r.row,
           tablesync._key_of(r.row, t.key_columns) AS new_key
      FROM runs AS r
      LEFT JOIN tablesync.trigger_tables AS t ON t.id = r.table_id
), effects AS (
    SELECT k.run, k.id, k.table_id, k.op, k.old_key AS key, NULL::jsonb AS row
      FROM keyed AS k
     WHERE k.op = 'D' OR (k.op = 'U' AND k.old_key IS DISTINCT FROM k.new_key)
    UNION ALL
    SELECT k.run, k.id, k.table_id, k.op, k.new_key, k.row
      FROM keyed AS k WHERE k.op IN ('I', 'U')
    UNION ALL
    SELECT k.run, k.id, k.table_id, k.op, NULL, NULL
      FROM keyed AS k WHERE k.op = 'T'
), last_effects AS (
    SELECT DISTINCT ON (f.run, f.key) f.*
      FROM effects AS f
     ORDER BY f.run, f.key, f.id DESC
)
SELECT min(l.table_id), bool_or(l.op = 'T'),
       jsonb_agg(l.key ORDER BY l.id) FILTER (WHERE l.op <> 'T' AND l.row IS NULL),
       jsonb_agg(l.row ORDER BY l.id) FILTER (WHERE l.row IS NOT NULL)
  FROM last_effects AS l
 GROUP BY l.run
 ORDER BY l.run
''', attributes='STABLE')

_REMOTE_CLOSE = Routine('_remote_close', 'p_conn text', 'p_conn text', 'void', 'plpgsql', '''
BEGIN
  IF p_conn = ANY (coalesce(dblink_get_connections(), ARRAY[]::text[])) THEN
    PERFORM dblink_disconnect(p_conn);
  END IF;
EXCEPTION WHEN OTHERS THEN
  NULL;  -- a broken connection is gone either way
END
''')

_REMOTE_BEGIN = Routine('_remote_begin', 'p_set text', 'p_set text', 'text', 'plpgsql', '''
-- Opens (or reuses) the set's dblink connection, named tablesync_<set>, through the set's
-- foreign server and the user mapping of the routine owner, and starts a remote transaction.
DECLARE
  v_conn text := format('tablesync_%s', p_set);
  v_server text;
BEGIN
  SELECT s.server INTO v_server FROM tablesync.trigger_sets AS s WHERE s.name = p_set;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tablesync: there is no trigger sync set "%"', p_set
      USING ERRCODE = 'undefined_object';
  END IF;
  IF v_conn = ANY (coalesce(dblink_get_connections(), ARRAY[]::text[])) THEN
    BEGIN
      PERFORM dblink_exec(v_conn, 'BEGIN');
      RETURN v_conn;
    EXCEPTION WHEN OTHERS THEN
      PERFORM tablesync._remote_close(v_conn);  -- stale (target restarted): connect again
    END;
  END IF;
  PERFORM dblink_connect(v_conn, v_server);
  PERFORM dblink_exec(v_conn, 'BEGIN');
  RETURN v_conn;
END
''')

_APPLY_ENTRIES = Routine(
    '_apply_entries', 'p_set text, p_ids bigint[], p_immediate boolean',
    'p_set text, p_ids bigint[], p_immediate boolean', 'integer', 'plpgsql', '''
-- Applies the changes p_ids in one remote transaction, then deletes them from the change log
-- (only after the remote COMMIT succeeded). On any error the remote transaction is abandoned
-- with its connection and the changes stay in the log.
DECLARE
  v_count integer := coalesce(cardinality(p_ids), 0);
  v_conn text;
  v_run record;
  v_table tablesync.trigger_tables;
  v_state text;
  v_message text;
  v_detail text;
BEGIN
  IF v_count = 0 THEN
    RETURN 0;
  END IF;
  BEGIN
    v_conn := tablesync._remote_begin(p_set);
    FOR v_run IN SELECT * FROM tablesync._segments(p_ids) LOOP
      SELECT * INTO v_table FROM tablesync.trigger_tables AS t WHERE t.id = v_run.seg_table;
      IF NOT FOUND THEN
        RAISE WARNING 'tablesync: skipped changes of sync set "%" to table id %, no longer in the set',
          p_set, v_run.seg_table;
        CONTINUE;
      END IF;
      IF v_run.seg_truncate THEN
        PERFORM dblink_exec(v_conn, tablesync._truncate_sql(v_table));
      END IF;
      IF v_run.seg_deletes IS NOT NULL THEN
        PERFORM dblink_exec(v_conn, tablesync._delete_sql(v_table, v_run.seg_deletes));
      END IF;
      IF v_run.seg_upserts IS NOT NULL THEN
        PERFORM dblink_exec(v_conn, tablesync._upsert_sql(v_table, v_run.seg_upserts));
      END IF;
    END LOOP;
    PERFORM dblink_exec(v_conn, 'COMMIT');
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL;
    PERFORM tablesync._remote_close(format('tablesync_%s', p_set));
    RAISE EXCEPTION USING ERRCODE = v_state,
      MESSAGE = format('tablesync: could not apply %s change(s) of sync set "%s" on its target: %s%s',
                       v_count, p_set, v_message,
                       CASE WHEN coalesce(v_detail, '') = '' THEN '' ELSE format(' (%s)', v_detail) END),
      HINT = tablesync._failure_hint(p_immediate);
  END;
  DELETE FROM tablesync.trigger_changes AS c WHERE c.id = ANY (p_ids);
  RETURN v_count;
END
''')

_REGISTER_COMMIT = Routine('_register_commit', 'p_set text, p_first_id bigint',
                           'p_set text, p_first_id bigint', 'void', 'plpgsql', definer=True,
                           body='''
-- Immediate mode, once per transaction and set: queue the deferred trigger that applies the
-- transaction's changes on the target just before it commits. A rolled back savepoint undoes
-- the setting and the row together.
DECLARE
  v_setting text := format('tablesync.pending_%s', p_set);
BEGIN
  IF coalesce(current_setting(v_setting, true), '') = '' THEN
    PERFORM set_config(v_setting, p_first_id::text, true);
    INSERT INTO tablesync.trigger_commits (set_name, first_id) VALUES (p_set, p_first_id);
  END IF;
END
''')

_CAPTURE_ROW = Routine('capture_row', '', '', 'trigger', 'plpgsql', '''
-- AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW. Arguments: set, mode, table id, key columns.
-- Runs for every row: no SET clause, so every type, function and operator is qualified.
DECLARE
  v_op pg_catalog."char";
  v_old pg_catalog.jsonb;
  v_key pg_catalog.jsonb;
  v_row pg_catalog.jsonb;
  v_id bigint;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    v_op := 'I';
  ELSE
    v_op := pg_catalog.left(TG_OP, 1);
    v_old := pg_catalog.to_jsonb(OLD);
    IF TG_NARGS OPERATOR(pg_catalog.=) 4 THEN
      v_key := pg_catalog.jsonb_build_object(TG_ARGV[3], v_old OPERATOR(pg_catalog.->) TG_ARGV[3]);
    ELSE
      v_key := tablesync._key_of(v_old, TG_ARGV[3:TG_NARGS OPERATOR(pg_catalog.-) 1]);
    END IF;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
    v_row := pg_catalog.to_jsonb(NEW);
  END IF;
  INSERT INTO tablesync.trigger_changes (set_name, table_id, op, key, row)
  VALUES (TG_ARGV[0], TG_ARGV[2]::pg_catalog.int4, v_op, v_key, v_row)
  RETURNING id INTO v_id;
  IF TG_ARGV[1] OPERATOR(pg_catalog.=) 'immediate' THEN
    PERFORM tablesync._register_commit(TG_ARGV[0], v_id);
  END IF;
  RETURN NULL;
END
''', definer=True, pinned=False)

_CAPTURE_TRUNCATE = Routine('capture_truncate', '', '', 'trigger', 'plpgsql', '''
-- AFTER TRUNCATE FOR EACH STATEMENT. Arguments: set, mode, table id.
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO tablesync.trigger_changes (set_name, table_id, op)
  VALUES (TG_ARGV[0], TG_ARGV[2]::integer, 'T')
  RETURNING id INTO v_id;
  IF TG_ARGV[1] = 'immediate' THEN
    PERFORM tablesync._register_commit(TG_ARGV[0], v_id);
  END IF;
  RETURN NULL;
END
''', definer=True)

_COMMIT_IMMEDIATE = Routine('commit_immediate', '', '', 'trigger', 'plpgsql', '''
-- Deferred constraint trigger on tablesync.trigger_commits: applies the changes this
-- transaction logged for the set in one remote transaction, before the local commit. An error
-- (target unreachable, or rejecting a change) fails the local commit.
BEGIN
  PERFORM tablesync._apply_entries(NEW.set_name, ARRAY(
    SELECT c.id FROM tablesync.trigger_changes AS c
     WHERE c.id >= NEW.first_id AND c.set_name = NEW.set_name AND c.txid = txid_current()
     ORDER BY c.id), true);
  DELETE FROM tablesync.trigger_commits AS m
   WHERE m.set_name = NEW.set_name AND m.first_id = NEW.first_id;
  PERFORM set_config(format('tablesync.pending_%s', NEW.set_name), '', true);
  RETURN NULL;
END
''', definer=True)

_FLUSH_BATCH = Routine('_flush_batch', 'p_set text, p_last_id bigint',
                       'p_set text, p_last_id bigint', 'integer', 'plpgsql', '''
-- One batch of the set's queued changes (ids up to p_last_id), applied in id order. The set's
-- row stays locked until the caller commits, so flushes of one set never overlap.
DECLARE
  v_size integer;
BEGIN
  SELECT s.batch_size INTO v_size FROM tablesync.trigger_sets AS s WHERE s.name = p_set FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tablesync: there is no trigger sync set "%"', p_set
      USING ERRCODE = 'undefined_object';
  END IF;
  RETURN tablesync._apply_entries(p_set, ARRAY(
    SELECT c.id FROM tablesync.trigger_changes AS c
     WHERE c.set_name = p_set AND c.id <= p_last_id
     ORDER BY c.id LIMIT v_size), false);
END
''', definer=True)

_BACKLOG_ENDS = Routine('_backlog_ends', 'p_set text', 'p_set text',
                        'TABLE(o_set text, o_last_id bigint)', 'plpgsql', '''
-- The sets with queued changes (all, or only p_set) and their last change id.
BEGIN
  IF p_set IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tablesync.trigger_sets AS s
                                        WHERE s.name = p_set) THEN
    RAISE EXCEPTION 'tablesync: there is no trigger sync set "%"', p_set
      USING ERRCODE = 'undefined_object';
  END IF;
  RETURN QUERY
    SELECT c.set_name, max(c.id) FROM tablesync.trigger_changes AS c
     WHERE p_set IS NULL OR c.set_name = p_set
     GROUP BY c.set_name ORDER BY c.set_name;
END
''', definer=True)

_FLUSH = Routine('flush', 'p_set text DEFAULT NULL, INOUT applied bigint DEFAULT 0',
                 'IN p_set text, INOUT applied bigint', None, 'plpgsql', '''
-- CALL tablesync.flush('<set>') (or CALL tablesync.flush() for every set): applies the changes
-- queued when it starts, batch by batch, one remote transaction and one local COMMIT per
-- batch. Must be called outside a transaction block; returns the number of changes applied.
DECLARE
  v_end record;
  v_count integer;
BEGIN
  applied := 0;
  FOR v_end IN SELECT * FROM tablesync._backlog_ends(p_set) LOOP
    LOOP
      v_count := tablesync._flush_batch(v_end.o_set, v_end.o_last_id);
      COMMIT;
      EXIT WHEN v_count = 0;
      applied := applied + v_count;
    END LOOP;
  END LOOP;
END
''')

_DRAIN = Routine('drain', 'p_set text', 'p_set text', 'bigint', 'plpgsql', '''
-- Applies every queued change of the set inside the caller's transaction (the module drains
-- before it switches a set to immediate mode or removes tables, with the tables locked).
DECLARE
  v_last_id bigint;
  v_count integer;
  v_total bigint := 0;
BEGIN
  SELECT e.o_last_id INTO v_last_id FROM tablesync._backlog_ends(p_set) AS e;
  IF v_last_id IS NULL THEN
    RETURN 0;
  END IF;
  LOOP
    v_count := tablesync._flush_batch(p_set, v_last_id);
    EXIT WHEN v_count = 0;
    v_total := v_total + v_count;
  END LOOP;
  RETURN v_total;
END
''', definer=True)

_BACKFILL = Routine('backfill', 'p_set text, p_table_id integer', 'p_set text, p_table_id integer',
                    'bigint', 'plpgsql', '''
-- Copies the rows of one source table to the target (upserts, one remote transaction) while the
-- set's flushes wait. Its triggers already queue every change, and the queue is applied after
-- this copy in id order, so the copy may see any state after the triggers went live: changes it
-- missed or copied too early are corrected by the queue.
DECLARE
  v_table tablesync.trigger_tables;
  v_size integer;
  v_query text;
  v_conn text;
  v_row jsonb;
  v_rows jsonb[] := ARRAY[]::jsonb[];
  v_total bigint := 0;
  v_state text;
  v_message text;
  v_detail text;
BEGIN
  SELECT s.batch_size INTO v_size FROM tablesync.trigger_sets AS s WHERE s.name = p_set FOR UPDATE;
  SELECT * INTO v_table FROM tablesync.trigger_tables AS t
   WHERE t.id = p_table_id AND t.set_name = p_set;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tablesync: table id % is not part of trigger sync set "%"', p_table_id, p_set
      USING ERRCODE = 'undefined_object';
  END IF;
  SELECT CASE c.relkind WHEN 'p' THEN 'SELECT pg_catalog.to_jsonb(s) FROM %I.%I AS s'
                        ELSE 'SELECT pg_catalog.to_jsonb(s) FROM ONLY %I.%I AS s' END
    INTO v_query
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
   WHERE n.nspname = v_table.source_schema AND c.relname = v_table.source_table;
  BEGIN
    v_conn := tablesync._remote_begin(p_set);
    FOR v_row IN EXECUTE format(v_query, v_table.source_schema, v_table.source_table) LOOP
      v_rows := array_append(v_rows, v_row);
      IF cardinality(v_rows) >= v_size THEN
        PERFORM dblink_exec(v_conn, tablesync._upsert_sql(v_table, to_jsonb(v_rows)));
        v_total := v_total + cardinality(v_rows);
        v_rows := ARRAY[]::jsonb[];
      END IF;
    END LOOP;
    IF cardinality(v_rows) > 0 THEN
      PERFORM dblink_exec(v_conn, tablesync._upsert_sql(v_table, to_jsonb(v_rows)));
      v_total := v_total + cardinality(v_rows);
    END IF;
    PERFORM dblink_exec(v_conn, 'COMMIT');
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL;
    PERFORM tablesync._remote_close(format('tablesync_%s', p_set));
    RAISE EXCEPTION USING ERRCODE = v_state,
      MESSAGE = format('tablesync: backfill of %I.%I (sync set "%s") failed: %s%s',
                       v_table.source_schema, v_table.source_table, p_set, v_message,
                       CASE WHEN coalesce(v_detail, '') = '' THEN '' ELSE format(' (%s)', v_detail) END);
  END;
  UPDATE tablesync.trigger_tables AS t SET backfilled_at = now() WHERE t.id = p_table_id;
  RETURN v_total;
END
''', definer=True)

_VERIFY_TARGET = Routine('verify_target', 'p_set text', 'p_set text', 'void', 'plpgsql', '''
-- Checks over dblink that every target table of the set exists, has the synced columns, a
-- primary key or unique index on exactly the key columns (ON CONFLICT needs it), and that the
-- remote user may SELECT (the key columns, for DELETE ... USING), INSERT, UPDATE, DELETE and
-- TRUNCATE it. Raises one error naming every problem.
DECLARE
  v_conn text;
  v_table tablesync.trigger_tables;
  v_name text;
  v_check record;
  v_problems text[] := ARRAY[]::text[];
  v_message text;
  v_detail text;
BEGIN
  BEGIN
    v_conn := tablesync._remote_begin(p_set);
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION USING ERRCODE = 'connection_exception',
      MESSAGE = format('tablesync: cannot reach the target of sync set "%s" to check its tables: %s%s',
                       p_set, v_message,
                       CASE WHEN coalesce(v_detail, '') = '' THEN '' ELSE format(' (%s)', v_detail) END),
      HINT = 'Check the target connection options (foreign server and user mapping) and the '
             'target''s pg_hba.conf, or skip this check (verify_target: false).';
  END;
  FOR v_table IN SELECT * FROM tablesync.trigger_tables AS t WHERE t.set_name = p_set ORDER BY t.id LOOP
    v_name := format('%I.%I', v_table.target_schema, v_table.target_table);
    SELECT * INTO v_check FROM dblink(v_conn, format($remote$
SELECT c.oid IS NOT NULL,
       ARRAY(SELECT u.name FROM pg_catalog.unnest(%2$L::text[]) AS u(name)
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                                 WHERE a.attrelid = c.oid AND a.attname = u.name
                                   AND a.attnum > 0 AND NOT a.attisdropped)),
       EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i,
                     LATERAL (SELECT pg_catalog.array_agg(a.attname::text) AS names
                                FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[])
                                     WITH ORDINALITY AS k(attnum, position)
                                JOIN pg_catalog.pg_attribute AS a
                                  ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                               WHERE k.position <= i.indnkeyatts) AS ic
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
                  AND i.indexprs IS NULL
                  AND ic.names @> %3$L::text[] AND ic.names <@ %3$L::text[]),
       ARRAY(SELECT p.name FROM pg_catalog.unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE',
                                                        'TRUNCATE']) AS p(name)
              WHERE NOT pg_catalog.has_table_privilege(c.oid, p.name))
  FROM (SELECT pg_catalog.to_regclass(%1$L) AS oid) AS c
$remote$, v_name, v_table.columns, v_table.key_columns))
      AS r(found boolean, missing text[], keyed boolean, denied text[]);
    IF NOT v_check.found THEN
      v_problems := array_append(v_problems, format('target table %s does not exist', v_name));
      CONTINUE;
    END IF;
    IF cardinality(v_check.missing) > 0 THEN
      v_problems := array_append(v_problems, format('target table %s has no column(s) %s',
                                 v_name, tablesync._quoted_list(v_check.missing, '%1$I', ', ')));
    END IF;
    IF NOT v_check.keyed THEN
      v_problems := array_append(v_problems, format(
        'target table %s has no primary key or unique index on exactly (%s), which the upserts need',
        v_name, tablesync._quoted_list(v_table.key_columns, '%1$I', ', ')));
    END IF;
    IF cardinality(v_check.denied) > 0 THEN
      v_problems := array_append(v_problems, format('the target user lacks %s on %s',
                                 array_to_string(v_check.denied, ', '), v_name));
    END IF;
  END LOOP;
  PERFORM dblink_exec(v_conn, 'ROLLBACK');
  IF cardinality(v_problems) > 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
      MESSAGE = format('tablesync: the target of sync set "%s" is not ready: %s',
                       p_set, array_to_string(v_problems, '; '));
  END IF;
END
''', definer=True)

# Creation order: SQL-language routines are checked at creation, so what they call comes first.
ROUTINES = (
    _KEY_OF, _FAILURE_HINT, _QUOTED_LIST, _UPSERT_SQL, _DELETE_SQL, _TRUNCATE_SQL, _SEGMENTS,
    _REMOTE_CLOSE, _REMOTE_BEGIN, _APPLY_ENTRIES, _REGISTER_COMMIT, _CAPTURE_ROW,
    _CAPTURE_TRUNCATE, _COMMIT_IMMEDIATE, _FLUSH_BATCH, _BACKLOG_ENDS, _FLUSH, _DRAIN, _BACKFILL,
    _VERIFY_TARGET,
)

CAPTURE_ROW = _CAPTURE_ROW.name
CAPTURE_TRUNCATE = _CAPTURE_TRUNCATE.name

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
