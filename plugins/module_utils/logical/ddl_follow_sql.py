# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database objects that carry a source's column changes inside the replication stream.

Source database (``pg_schema_follow side=source``):

* ``tablesync_ddl.<set>``: the set's queue table, published with the set's tables. One row per
  ``ALTER TABLE`` of a published table: the table's columns after the command (attnum, name,
  type, NOT NULL, collation, default flag, and ``attmissingval``: the value rows that existed
  before an ``ADD COLUMN ... DEFAULT`` got), as structured JSON, never the command's text.
* ``tablesync_ddl.capture()``: the event trigger function (``ddl_command_end``, tag ``ALTER
  TABLE``) that writes those rows, in the same transaction as the command, so the row sits in
  the stream exactly between the changes written before and after the command.

Target database (``side=target``):

* the same queue table, filled by the subscription, with an ``ENABLE ALWAYS`` trigger running
  ``tablesync_ddl.apply()``: it compares the row with the previous row of the same table (renames
  keep their attnum, drops lose it) and with the target table, and alters the target with
  identifiers quoted by ``format('%I')`` and type names that must match the format_type()
  grammar and resolve with ``to_regtype``. What cannot be followed exactly (a narrowing or
  other type change, a column added with a volatile default) raises an error naming the table,
  the column and the reason: the apply worker stops there, before any later row.

Every function is SECURITY DEFINER with a pinned ``search_path`` and the pinned text forms, and
PUBLIC may not execute it; the schema and queue are readable only by their owner (and the
set's replication role, which copies the queue).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import DDL_SCHEMA

SCHEMA = DDL_SCHEMA

# The bodies below spell the schema (SCHEMA) and the publication prefix (core.names.PREFIX)
# literally; tests/unit/.../test_ddl_follow.py checks they agree with core.names.
EVENT_TRIGGER = 'tablesync_ddl_capture'
APPLY_TRIGGER = 'tablesync_ddl_apply'

# pinned in every function: text forms (as core.text_forms) and the search path
SETTINGS = ("SET search_path = pg_catalog, pg_temp SET \"DateStyle\" = 'ISO, YMD' "
            "SET \"IntervalStyle\" = 'postgres' SET \"TimeZone\" = 'UTC' SET extra_float_digits = '3' "
            "SET bytea_output = 'hex' SET lc_monetary = 'C'")

# {identity}: ``GENERATED ALWAYS AS IDENTITY`` on the source (ids of one table's rows rise in
# commit order: its ALTER TABLE holds the table's lock until commit), nothing on the target.
QUEUE_DDL = '''CREATE TABLE {queue} (
    id bigint NOT NULL {identity} PRIMARY KEY,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    columns jsonb NOT NULL,
    captured_at timestamptz NOT NULL)'''

# name -> (arguments, result, language, volatility, body)
COLUMNS_OF = r'''
SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
         'attnum', a.attnum, 'name', a.attname,
         'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
         'not_null', a.attnotnull,
         'collation', CASE WHEN a.attcollation <> ty.typcollation
                           THEN pg_catalog.jsonb_build_array(cn.nspname, co.collname) END,
         'has_default', a.atthasdef,
         'missing', CASE WHEN a.atthasmissing THEN a.attmissingval::pg_catalog.text END)
         ORDER BY a.attnum), '[]')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
   AND (names IS NULL OR a.attname = ANY (names))
'''

CAPTURE = r'''
DECLARE
  cmd record;
  pub record;
BEGIN
  FOR cmd IN SELECT DISTINCT d.objid FROM pg_catalog.pg_event_trigger_ddl_commands() d
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.object_type IN ('table', 'table column')
  LOOP
    FOR pub IN
      SELECT q.relname::text AS queue, tn.nspname::text AS table_schema, t.relname::text AS table_name,
             pt.attnames
        FROM pg_catalog.pg_class t
        JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_catalog.pg_publication_tables pt ON pt.schemaname = tn.nspname AND pt.tablename = t.relname
        JOIN pg_catalog.pg_namespace qn ON qn.nspname = 'tablesync_ddl'
        JOIN pg_catalog.pg_class q ON q.relnamespace = qn.oid AND q.relkind = 'r'
                                  AND pt.pubname = 'tablesync_' || q.relname
       WHERE t.oid = cmd.objid AND tn.nspname <> 'tablesync_ddl'
    LOOP
      EXECUTE pg_catalog.format('INSERT INTO tablesync_ddl.%I (table_schema, table_name, columns, captured_at) '
                                'VALUES ($1, $2, $3, pg_catalog.clock_timestamp())', pub.queue)
        USING pub.table_schema, pub.table_name, tablesync_ddl.columns_of(cmd.objid, pub.attnames);
    END LOOP;
  END LOOP;
END
'''

WIDENING = r'''
DECLARE
  ranks text[] := ARRAY['smallint', 'integer', 'bigint'];
  pattern text;
  ms text[];
  mt text[];
BEGIN
  IF s = t THEN
    RETURN false;
  END IF;
  IF s = ANY (ranks) AND t = ANY (ranks) THEN
    RETURN pg_catalog.array_position(ranks, s) > pg_catalog.array_position(ranks, t);
  END IF;
  IF t = ANY (ranks) AND s = 'numeric' THEN
    RETURN true;
  END IF;
  IF t = 'real' AND s = 'double precision' THEN
    RETURN true;
  END IF;
  FOREACH pattern IN ARRAY ARRAY['^character varying(?:\((\d+)\))?$', '^character(?:\((\d+)\))?$'] LOOP
    ms := pg_catalog.regexp_match(s, pattern);
    mt := pg_catalog.regexp_match(t, pattern);
    IF ms IS NOT NULL AND mt IS NOT NULL THEN
      RETURN ms[1] IS NULL OR (mt[1] IS NOT NULL AND ms[1]::int > mt[1]::int);
    END IF;
  END LOOP;
  IF s = 'text' AND t ~ '^character varying(?:\(\d+\))?$' THEN
    RETURN true;
  END IF;
  ms := pg_catalog.regexp_match(s, '^numeric(?:\((\d+),(\d+)\))?$');
  mt := pg_catalog.regexp_match(t, '^numeric(?:\((\d+),(\d+)\))?$');
  IF ms IS NOT NULL AND mt IS NOT NULL THEN
    IF ms[1] IS NULL THEN
      RETURN true;
    END IF;
    RETURN mt[1] IS NOT NULL AND ms[2] = mt[2] AND ms[1]::int >= mt[1]::int;
  END IF;
  ms := pg_catalog.regexp_match(s, '^(timestamp|time)(?:\((\d)\))? (with|without) time zone$');
  mt := pg_catalog.regexp_match(t, '^(timestamp|time)(?:\((\d)\))? (with|without) time zone$');
  IF ms IS NOT NULL AND mt IS NOT NULL AND ms[1] = mt[1] AND ms[3] = mt[3] THEN
    RETURN coalesce(ms[2], '6')::int >= coalesce(mt[2], '6')::int;
  END IF;
  RETURN false;
END
'''

TYPE_SQL = r'''
DECLARE
  t text := col->>'type';
BEGIN
  IF t !~ '^(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\(\d+(?:,\d+)*\)|\[\]|\.| )+$'
     OR pg_catalog.to_regtype(t) IS NULL THEN
    RAISE EXCEPTION 'tablesync: unexpected type name % in a column change', pg_catalog.quote_literal(t);
  END IF;
  IF col->'collation' IS NOT NULL AND pg_catalog.jsonb_typeof(col->'collation') = 'array' THEN
    RETURN pg_catalog.format('%s COLLATE %I.%I', t, col->'collation'->>0, col->'collation'->>1);
  END IF;
  RETURN t;
END
'''

APPLY = r'''
DECLARE
  rel pg_catalog.regclass := pg_catalog.to_regclass(pg_catalog.format('%I.%I', NEW.table_schema, NEW.table_name));
  prev jsonb;
BEGIN
  IF rel IS NULL THEN
    RETURN NULL;   -- a table this target does not have
  END IF;
  -- rows an initial copy brings are history: the target tables were created from the source's
  -- current shape (a table synchronisation worker copies in state 'd'; pg_subscription's
  -- snapshot copy says so)
  IF pg_catalog.current_setting('tablesync.copying', true) = 'on'
     OR EXISTS (SELECT FROM pg_catalog.pg_subscription_rel r
                 WHERE r.srrelid = TG_RELID AND r.srsubstate = 'd') THEN
    RETURN NULL;
  END IF;
  EXECUTE pg_catalog.format('SELECT q.columns FROM %I.%I q WHERE q.table_schema = $1 AND q.table_name = $2 '
                            'AND q.id < $3 ORDER BY q.id DESC LIMIT 1', TG_TABLE_SCHEMA, TG_TABLE_NAME)
    INTO prev USING NEW.table_schema, NEW.table_name, NEW.id;
  PERFORM tablesync_ddl.follow(rel, prev, NEW.columns);
  RETURN NULL;
END
'''

# The table's columns ``cols`` (as columns_of writes them) applied to the table ``rel``; ``prev``:
# the columns before (at least attnum and name; NULL: unknown, nothing is renamed or dropped).
FOLLOW = r'''
DECLARE
  ident text := rel::text;
  col jsonb;
  gone jsonb;
  have record;
  colname text;
  not_null boolean;
BEGIN
  IF prev IS NOT NULL THEN
    -- a renamed column keeps its attnum
    FOR col IN SELECT c FROM pg_catalog.jsonb_array_elements(cols) c LOOP
      gone := (SELECT o FROM pg_catalog.jsonb_array_elements(prev) o WHERE o->'attnum' = col->'attnum');
      IF gone IS NOT NULL AND gone->>'name' <> col->>'name'
         AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = rel AND a.attname = gone->>'name'
                      AND a.attnum > 0 AND NOT a.attisdropped)
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = rel AND a.attname = col->>'name'
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %s RENAME COLUMN %I TO %I', ident, gone->>'name', col->>'name');
      END IF;
    END LOOP;
    -- a dropped column's attnum is gone
    FOR gone IN SELECT o FROM pg_catalog.jsonb_array_elements(prev) o
                WHERE NOT EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(cols) c
                                   WHERE c->'attnum' = o->'attnum') LOOP
      IF EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = rel AND a.attname = gone->>'name'
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP COLUMN %I', ident, gone->>'name');
      END IF;
    END LOOP;
  END IF;
  FOR col IN SELECT c FROM pg_catalog.jsonb_array_elements(cols) c LOOP
    colname := col->>'name';
    not_null := (col->>'not_null')::boolean;
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null INTO have
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = rel AND a.attname = colname AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
      IF col->>'missing' IS NOT NULL THEN
        IF col->>'type' LIKE '%[]' THEN
          RAISE EXCEPTION 'tablesync: cannot follow %: column % is an array added with a default', ident, colname
            USING HINT = 'add the column on the target and copy the table again (docs/schema-changes.md)';
        END IF;
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN %I %s%s DEFAULT (CAST(%L AS %s[]))[1]', ident, colname,
                                  tablesync_ddl.type_sql(col), CASE WHEN not_null THEN ' NOT NULL' ELSE '' END,
                                  col->>'missing', tablesync_ddl.type_sql(col - 'collation'));
        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', ident, colname);
      ELSIF (col->>'has_default')::boolean THEN
        RAISE EXCEPTION 'tablesync: cannot follow %: column % was added with a volatile default', ident, colname
          USING DETAIL = 'the value the existing rows got is not in the catalogs',
                HINT = 'add the column on the target and copy the table again (docs/schema-changes.md)';
      ELSE
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN %I %s%s', ident, colname, tablesync_ddl.type_sql(col),
                                  CASE WHEN not_null THEN ' NOT NULL' ELSE '' END);
      END IF;
      CONTINUE;
    END IF;
    IF have.type <> col->>'type' THEN
      IF NOT tablesync_ddl.widening(col->>'type', have.type) THEN
        RAISE EXCEPTION 'tablesync: cannot follow %: column % changed from % to %, which is not a lossless widening',
          ident, colname, have.type, col->>'type'
          USING HINT = 're-create the column on the target and copy the table again (docs/schema-changes.md)';
      END IF;
      EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s', ident, colname, tablesync_ddl.type_sql(col));
    END IF;
    IF have.not_null AND NOT not_null THEN
      EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', ident, colname);
    ELSIF not_null AND NOT have.not_null THEN
      EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', ident, colname);
    END IF;
  END LOOP;
END
'''


# A trigger set's flush (trigger/follow.py) calls this through its dblink connection to the
# target, as the set's target login: the login may alter only tables it may write.
FOLLOW_TABLE = r'''
DECLARE
  rel pg_catalog.regclass := pg_catalog.to_regclass(p_table);
BEGIN
  IF rel IS NULL THEN
    RAISE EXCEPTION 'tablesync: cannot follow %: no such table on this target', p_table;
  END IF;
  IF NOT (pg_catalog.has_table_privilege(session_user, rel, 'INSERT')
          AND pg_catalog.has_table_privilege(session_user, rel, 'DELETE')) THEN
    RAISE EXCEPTION 'tablesync: cannot follow %: % may not write it, so it may not alter it', rel, session_user;
  END IF;
  PERFORM tablesync_ddl.follow(rel, p_prev, p_columns);
  RETURN 'followed';
END
'''

# What pg_sync_info (section schema_changes), check.yml and the exporter read, on both sides:
# per queue (set) and table, the last captured change (id, time, columns as [name, type]) and
# the local table's columns. On a target, a table whose columns differ from the last change
# applied there has drifted; the source's last change id above the target's is not applied yet.
STATUS = r'''
DECLARE
  q record;
BEGIN
  FOR q IN SELECT c.relname::text AS queue FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'tablesync_ddl' AND c.relkind = 'r' ORDER BY 1 LOOP
    RETURN QUERY EXECUTE pg_catalog.format(
      'SELECT %L::text, l.table_schema, l.table_name, l.id, l.captured_at, '
      '  (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(e->>''name'', e->>''type'') '
      '                               ORDER BY (e->>''attnum'')::integer) '
      '     FROM pg_catalog.jsonb_array_elements(l.columns) e), '
      '  (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(a.attname, '
      '                               pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) '
      '     FROM pg_catalog.pg_attribute a '
      '    WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format(''%%I.%%I'', l.table_schema, l.table_name)) '
      '      AND a.attnum > 0 AND NOT a.attisdropped '
      '      AND coalesce(pg_catalog.length(pg_catalog.to_jsonb(a)->>''attgenerated''), 0) = 0) '
      '  FROM (SELECT DISTINCT ON (x.table_schema, x.table_name) x.* FROM %I.%I x '
      '         ORDER BY x.table_schema, x.table_name, x.id DESC) l',
      q.queue, 'tablesync_ddl', q.queue);
  END LOOP;
END
'''
STATUS_RETURNS = ('TABLE (set_name text, table_schema text, table_name text, last_change bigint, '
                  'changed_at timestamptz, columns jsonb, table_columns jsonb)')
MONITOR_ROLE = 'pg_monitor'

# name: (arguments, returns, language, volatility, body); the source side needs the first two,
# the target side the last three.
FUNCTIONS = {
    'columns_of': ('rel oid, names name[]', 'jsonb', 'sql', 'STABLE', COLUMNS_OF),
    'capture': ('', 'event_trigger', 'plpgsql', 'VOLATILE', CAPTURE),
    'widening': ('s text, t text', 'boolean', 'plpgsql', 'IMMUTABLE', WIDENING),
    'type_sql': ('col jsonb', 'text', 'plpgsql', 'STABLE', TYPE_SQL),
    'follow': ('rel regclass, prev jsonb, cols jsonb', 'void', 'plpgsql', 'VOLATILE', FOLLOW),
    'apply': ('', 'trigger', 'plpgsql', 'VOLATILE', APPLY),
    'follow_table': ('p_table text, p_prev jsonb, p_columns jsonb', 'text', 'plpgsql', 'VOLATILE',
                     FOLLOW_TABLE),
    'status': ('', STATUS_RETURNS, 'plpgsql', 'STABLE', STATUS),
}
SIDES = {'source': ('columns_of', 'capture', 'status'), 'target': ('widening', 'type_sql', 'follow', 'apply', 'status'),
         'trigger_target': ('widening', 'type_sql', 'follow', 'follow_table')}
