# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Column changes of trigger-synced tables, followed between runs (routines v3).

On the source, the event trigger ``tablesync_trigger_follow`` (``ddl_command_end``, tag
``ALTER TABLE``) runs ``tablesync._follow_ddl()`` in the transaction of every ALTER TABLE of a
synced table:

* the table's synced columns are recomputed: by attnum (``trigger_tables.numbers``), so a
  renamed column keeps its place and a dropped one leaves; a table synced with all its columns
  (``follow``) also gains the columns added to it;
* its capture function is generated again (``_capture_body`` writes exactly the text that
  ``capture.capture_body`` writes, so the next run of the module sees no difference), and
* one change ``op = 'S'`` is queued: ``key[1]`` the synced columns before (attnum, name),
  ``row[1]`` the columns after (``_columns_of``: attnum, name, type, NOT NULL, collation and
  ``attmissingval``, the value existing rows got from an ``ADD COLUMN ... DEFAULT``).

Changes queued before the ALTER carry the old columns and are applied with them (the flush
takes the column names of a change from the table's next ``'S'`` change). When the flush
reaches the ``'S'`` change, it calls ``tablesync_ddl.follow_table(table, before, after)`` on the
target, in the same remote transaction as the rows around it: the function that applies the
logical method's column changes (``logical/ddl_follow_sql``, installed on the target by
``pg_schema_follow side=trigger_target``, the trigger_target role does it) renames, drops,
adds (existing rows get exactly the source's value), widens losslessly and sets NOT NULL, for
tables the calling login may write only. Anything else (a narrowing, a volatile default) fails
the flush naming the table, the column and the reason, and the changes stay queued until the
target is fixed. No SQL text travels: the queue holds catalog facts only, only the owner role
may write it, and they reach the target as literals.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import quote_ident
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import COLUMNS_OF
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.schema import (
    HEADER, PINNED, SEARCH_PATH, Routine, _sql_string)

EVENT_TRIGGER = 'tablesync_trigger_follow'
EVENT_FUNCTION = '_follow_ddl'
EVENT_TRIGGER_DDL = ("CREATE EVENT TRIGGER tablesync_trigger_follow ON ddl_command_end "
                     "WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION tablesync._follow_ddl()")
SCHEMA_INDEX = 'trigger_changes_schema'
SCHEMA_INDEX_DDL = ("CREATE INDEX IF NOT EXISTS trigger_changes_schema ON tablesync.trigger_changes "
                    "(table_id, id) WHERE op = 'S'")
# storage written by routines v2 (or upgraded from v1): the columns' attnums and the follow flag
UPGRADE_V2 = ('ALTER TABLE tablesync.trigger_tables ADD COLUMN IF NOT EXISTS numbers smallint[], '
              'ADD COLUMN IF NOT EXISTS follow boolean NOT NULL DEFAULT false',)

# the SET clauses of a capture function (as schema.settings_clause renders them)
_SETTINGS_TEXT = ' '.join(['SET search_path = %s' % SEARCH_PATH]
                          + ['SET %s = %s' % (quote_ident(k), _sql_string(v)) for k, v in PINNED])

_FORCE_QUOTE = Routine('_force_quote', 'p_name text', 'p_name text', 'text', 'sql', '''
-- Always double-quoted, as statements.quote_ident() writes names into capture functions.
SELECT '"' || pg_catalog.replace(p_name, '"', '""') || '"'
''', attributes='IMMUTABLE')

_VALUES_ARRAY = Routine('_values_array', 'p_rel oid, p_record text, p_columns text[]',
                        'p_rel oid, p_record text, p_columns text[]', 'text', 'sql', '''
-- capture.values_array(): each column by its type's own output function.
SELECT 'ARRAY[' || coalesce(pg_catalog.string_agg(pg_catalog.format(
         'pg_catalog.textin(%s.%s(%s.%s))', tablesync._force_quote(fn.nspname::text),
         tablesync._force_quote(f.proname::text), p_record, tablesync._force_quote(c.name)),
         ', ' ORDER BY c.position), '') || ']::pg_catalog.text[]'
  FROM pg_catalog.unnest(p_columns) WITH ORDINALITY AS c(name, position)
  JOIN pg_catalog.pg_attribute AS a ON a.attrelid = p_rel AND a.attname = c.name
                                   AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type AS ty ON ty.oid = a.atttypid
  JOIN pg_catalog.pg_proc AS f ON f.oid = ty.typoutput
  JOIN pg_catalog.pg_namespace AS fn ON fn.oid = f.pronamespace
''', attributes='STABLE', definer=True)

_CAPTURE_BODY = Routine(
    '_capture_body',
    'p_set text, p_mode text, p_id integer, p_schema text, p_table text, p_rel oid, '
    'p_columns text[], p_keys text[]',
    'p_set text, p_mode text, p_id integer, p_schema text, p_table text, p_rel oid, '
    'p_columns text[], p_keys text[]', 'text', 'plpgsql', """
-- capture.capture_body(), character for character.
DECLARE
  nl text := pg_catalog.chr(10);
  v_new text := tablesync._values_array(p_rel, 'NEW', p_columns);
  v_old text := tablesync._values_array(p_rel, 'OLD', CASE WHEN pg_catalog.cardinality(p_keys) > 0
                                                          THEN p_keys ELSE p_columns END);
  v_insert text := 'INSERT INTO tablesync.trigger_changes (set_name, table_id, op, key, row)' || nl
                   || '    VALUES';
  v_common text := '''' || pg_catalog.replace(p_set, '''', '''''') || ''', ' || p_id::text;
  v_returning text := CASE WHEN p_mode = 'immediate' THEN nl || '    RETURNING id INTO v_id' ELSE '' END;
  v_register text := CASE WHEN p_mode = 'immediate'
                          THEN nl || '  PERFORM tablesync._register_commit('''
                               || pg_catalog.replace(p_set, '''', '''''') || ''', v_id);'
                          ELSE '' END;
BEGIN
  RETURN @header@
    || '-- Capture of ' || tablesync._force_quote(p_schema) || '.' || tablesync._force_quote(p_table)
    || ' for sync set ' || tablesync._force_quote(p_set) || ' (table id ' || p_id::text
    || ', mode ' || p_mode || ', '
    || CASE WHEN pg_catalog.cardinality(p_keys) > 0
            THEN 'key ' || pg_catalog.array_to_string(ARRAY(
                   SELECT tablesync._force_quote(k.name)
                     FROM pg_catalog.unnest(p_keys) WITH ORDINALITY AS k(name, position)
                    ORDER BY k.position), ', ')
            ELSE 'keyless: rows identified by all synced columns' END || ').' || nl
    || 'DECLARE' || nl || '  v_id bigint;' || nl || 'BEGIN' || nl
    || '  IF TG_OP = ''INSERT'' THEN' || nl
    || '    ' || v_insert || ' (' || v_common || ', ''I'', NULL,' || nl
    || '            ' || v_new || ')' || v_returning || ';' || nl
    || '  ELSIF TG_OP = ''UPDATE'' THEN' || nl
    || '    ' || v_insert || ' (' || v_common || ', ''U'',' || nl
    || '            ' || v_old || ',' || nl
    || '            ' || v_new || ')' || v_returning || ';' || nl
    || '  ELSE' || nl
    || '    ' || v_insert || ' (' || v_common || ', ''D'',' || nl
    || '            ' || v_old || ', NULL)' || v_returning || ';' || nl
    || '  END IF;' || v_register || nl
    || '  RETURN NULL;' || nl
    || 'END' || nl;
END
""".replace('@header@', _sql_string(HEADER)), attributes='STABLE', definer=True)

_COLUMNS_OF = Routine('_columns_of', 'rel oid, names name[]', 'rel oid, names name[]', 'jsonb',
                      'sql', COLUMNS_OF, attributes='STABLE', definer=True)
_FOLLOW_DDL = Routine('_follow_ddl', '', '', 'event_trigger', 'plpgsql', '''
-- ddl_command_end, tag ALTER TABLE: the synced columns of each altered synced table follow the
-- table (by attnum), its capture function is generated again and an 'S' change is queued.
DECLARE
  cmd record;
  t record;
  v_numbers smallint[];
  v_names text[];
  v_keys text[];
  v_number smallint;
  v_key text;
  v_prev jsonb;
  v_id bigint;
BEGIN
  FOR cmd IN SELECT DISTINCT d.objid FROM pg_catalog.pg_event_trigger_ddl_commands() AS d
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.object_type IN ('table', 'table column')
  LOOP
    FOR t IN SELECT tt.id, tt.set_name, tt.source_schema, tt.source_table, tt.key_columns,
                    tt.columns, tt.numbers, tt.follow, s.mode
               FROM tablesync.trigger_tables AS tt
               JOIN tablesync.trigger_sets AS s ON s.name = tt.set_name
               JOIN pg_catalog.pg_namespace AS n ON n.nspname = tt.source_schema
               JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = tt.source_table
              WHERE c.oid = cmd.objid AND tt.numbers IS NOT NULL
              ORDER BY tt.id
    LOOP
      v_prev := (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('attnum', x.num, 'name', x.name)
                                             ORDER BY x.position)
                   FROM ROWS FROM (pg_catalog.unnest(t.numbers), pg_catalog.unnest(t.columns))
                        WITH ORDINALITY AS x(num, name, position));
      IF t.follow THEN
        SELECT pg_catalog.array_agg(a.attnum ORDER BY a.attnum),
               pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
          INTO v_numbers, v_names
          FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid = cmd.objid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
      ELSE
        SELECT pg_catalog.array_agg(a.attnum ORDER BY x.position),
               pg_catalog.array_agg(a.attname::text ORDER BY x.position)
          INTO v_numbers, v_names
          FROM pg_catalog.unnest(t.numbers) WITH ORDINALITY AS x(num, position)
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = cmd.objid AND a.attnum = x.num
                                           AND NOT a.attisdropped AND a.attgenerated = '';
      END IF;
      v_keys := ARRAY[]::text[];
      FOREACH v_key IN ARRAY t.key_columns LOOP
        v_number := t.numbers[pg_catalog.array_position(t.columns, v_key)];
        IF v_number IS NULL OR pg_catalog.array_position(v_numbers, v_number) IS NULL THEN
          RAISE EXCEPTION 'tablesync: column % of table %.% identifies the rows of trigger sync set % and cannot leave it',
            pg_catalog.quote_ident(v_key), pg_catalog.quote_ident(t.source_schema),
            pg_catalog.quote_ident(t.source_table), pg_catalog.quote_ident(t.set_name)
            USING HINT = 'take the table out of the sync set (site.yml) before this change';
        END IF;
        v_keys := v_keys || v_names[pg_catalog.array_position(v_numbers, v_number)];
      END LOOP;
      IF coalesce(pg_catalog.cardinality(v_names), 0) = 0 THEN
        RAISE EXCEPTION 'tablesync: table %.% of trigger sync set % would have no synced column left',
          pg_catalog.quote_ident(t.source_schema), pg_catalog.quote_ident(t.source_table),
          pg_catalog.quote_ident(t.set_name);
      END IF;
      UPDATE tablesync.trigger_tables SET columns = v_names, numbers = v_numbers, key_columns = v_keys
       WHERE id = t.id;
      EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION tablesync.%I() RETURNS trigger LANGUAGE plpgsql '
                                'SECURITY DEFINER @settings@ AS %L', 'capture_' || t.id::text,
                                tablesync._capture_body(t.set_name, t.mode, t.id, t.source_schema,
                                                        t.source_table, cmd.objid, v_names, v_keys));
      INSERT INTO tablesync.trigger_changes (set_name, table_id, op, key, row)
      VALUES (t.set_name, t.id, 'S', ARRAY[v_prev::text],
              ARRAY[tablesync._columns_of(cmd.objid, v_names::name[])::text])
      RETURNING id INTO v_id;
      IF t.mode = 'immediate' THEN
        PERFORM tablesync._register_commit(t.set_name, v_id);
      END IF;
    END LOOP;
  END LOOP;
END
'''.replace('@settings@', _SETTINGS_TEXT.replace("'", "''")), definer=True)

# creation order: SQL-language routines are checked at creation
FOLLOW_ROUTINES = (_FORCE_QUOTE, _VALUES_ARRAY, _CAPTURE_BODY, _COLUMNS_OF, _FOLLOW_DDL)
