# -*- coding: utf-8 -*-
"""Unit tests of the pg_publication planner and validation (no database)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core import connection
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.publication import (
    FEATURE_GATES, PUBLISH_OPS, PublicationError, adopt_equivalent_filters,
    current_identity, desired_from_params, features_used, filter_changes, filter_key_columns,
    merge_desired, plan_drop_changed,
    missing_objects_message, needs_identity_facts, order_columns, parse_replica_identity, plan,
    plan_identity, plan_replica_identity, public_state, state_from_catalog, structure_problems,
    table_identities, version_gates, version_problems)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.row_filter import RowFilterError, check_row_filter
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all

PG15 = 150004
PG18 = 180001
ALL = tuple(PUBLISH_OPS)


def params(**kw):
    base = dict(name='pub', state='present', publish=list(PUBLISH_OPS), cascade=False,
                check_replica_identity=True)
    base.update(kw)
    return base


def desired(**kw):
    return desired_from_params(params(**kw))


def state(tables=None, **kw):
    base = dict(name='pub', owner=None, all_tables=False, tables=tables or {}, schemas=(),
                publish=ALL, publish_via_partition_root=None, publish_generated_columns=None, comment=None)
    base.update(kw)
    return base


def spec(columns=None, where=None):
    return {'columns': tuple(columns) if columns else None, 'where': where}


def sql_of(desired_state, current=None, version=PG15):
    return render_all(plan(desired_state, current, version))


def final(current=None, **kw):
    return merge_desired(desired(**kw), current)


# ------------------------------------------------------------------------------------------
# Parsing the options
# ------------------------------------------------------------------------------------------

class TestParse(object):
    def test_string_and_dict_tables(self):
        d = desired(tables=['Sales.Order Items', 't', {'name': 's.u', 'columns': ['b', 'a'], 'where': ' a > 1 '}])
        assert d['tables'] == {
            ('Sales', 'Order Items'): {'columns': None, 'where': None, 'replica_identity': None},
            ('public', 't'): {'columns': None, 'where': None, 'replica_identity': None},
            ('s', 'u'): {'columns': ('b', 'a'), 'where': 'a > 1', 'replica_identity': None},
        }

    def test_unset_options_are_not_managed(self):
        d = desired()
        assert d['tables'] is None and d['schemas'] is None and d['all_tables'] is None
        assert d['owner'] is None and d['comment'] is None and d['publish_via_partition_root'] is None
        assert d['publish'] == ALL

    def test_publish_canonical_order_and_dedup(self):
        assert desired(publish=['truncate', 'insert', 'insert'])['publish'] == ('insert', 'truncate')
        assert desired(publish=[])['publish'] == ()

    def test_schemas_sorted_and_deduplicated(self):
        assert desired(schemas=['b', 'a', 'b'])['schemas'] == ('a', 'b')

    def test_empty_where_and_columns_mean_none(self):
        d = desired(tables=[{'name': 't', 'where': '  ', 'columns': []}])
        assert d['tables'][('public', 't')]['where'] is None
        assert d['tables'][('public', 't')]['columns'] is None

    @pytest.mark.parametrize('tables, message', [
        (['t', 'public.t'], 'public.t is listed more than once'),
        ([{'columns': ['a']}], 'has no name'),
        ([{'name': 't', 'column': ['a']}], 'unknown key(s) column'),
        ([{'name': 't', 'columns': ['a', 'a']}], 'lists a more than once'),
        ([{'name': 't', 'columns': 'a'}], 'must be a non-empty list of column names'),
        ([{'name': 't', 'where': 5}], 'must be a string'),
        (['a.b.c'], 'is not a valid schema.table name'),
        ([{'name': 't', 'replica_identity': 'nothing'}], "replica_identity of table public.t must be"),
    ])
    def test_bad_tables(self, tables, message):
        with pytest.raises(PublicationError) as e:
            desired(tables=tables)
        assert message in str(e.value)

    def test_all_tables_excludes_lists(self):
        with pytest.raises(PublicationError, match='all_tables: true cannot be combined'):
            desired(all_tables=True, tables=['t'])
        with pytest.raises(PublicationError, match='all_tables: true cannot be combined'):
            desired(all_tables=True, schemas=['s'])
        assert desired(all_tables=False, tables=['t'])['all_tables'] is False

    def test_absent_ignores_other_options(self):
        assert desired(state='absent', cascade=True) == {'state': 'absent', 'name': 'pub', 'cascade': True}

    @pytest.mark.parametrize('value, allow_default, expected', [
        (None, False, None),
        ('full', False, ('full',)),
        ('index:my idx', False, ('index', 'my idx')),
        ('default', True, ('default',)),
    ])
    def test_replica_identity(self, value, allow_default, expected):
        assert parse_replica_identity(value, allow_default) == expected

    @pytest.mark.parametrize('value', ['default', 'nothing', 'index:', 'FULL', ['full']])
    def test_bad_top_level_replica_identity(self, value):
        with pytest.raises(PublicationError):
            parse_replica_identity(value)

    def test_names_up_to_63_bytes(self):
        name63 = u'é' * 31 + 'x'  # 63 bytes in UTF-8
        d = desired(name=name63, owner=name63, schemas=[name63],
                    tables=[{'name': '%s.%s' % (name63, name63), 'columns': [name63]}])
        assert d['name'] == name63
        assert (name63, name63) in d['tables']

    @pytest.mark.parametrize('option', ['name', 'owner', 'schemas', 'table', 'schema', 'column', 'index'])
    def test_names_over_63_bytes_refused(self, option):
        long_name = u'é' * 32  # 64 bytes
        kw = {
            'name': dict(name=long_name),
            'owner': dict(owner=long_name),
            'schemas': dict(schemas=[long_name]),
            'table': dict(tables=['s.' + long_name]),
            'schema': dict(tables=[long_name + '.t']),
            'column': dict(tables=[{'name': 't', 'columns': [long_name]}]),
            'index': dict(replica_identity='index:' + long_name),
        }[option]
        with pytest.raises(PublicationError, match='longer than 63 bytes'):
            desired(**kw)


class TestRowFilterLexer(object):
    @pytest.mark.parametrize('text', [
        'a > 5',
        "b = 'x;y' AND c <> ')'",
        "b = 'it''s (' ",
        'b = $$;)$$ OR b = $tag$ ( $tag$',
        "b = E'\\';)'",
        '"odd;col)" IS NOT NULL',
        '(a > 1) AND ((b < 2) OR c)',
        'a > 1 -- a comment; with ) inside\n',
        'a /* nested /* ; ) */ comment */ > 1',
        'a$b > 1',
        '"\u00e9t\u00e9" > 1 AND \u00e9t\u00e9$x > 2',
        "b = $tag$ ; ) $tag$",
        "b = $\u00e9t\u00e9$ ; ) $\u00e9t\u00e9$",
    ])
    def test_single_expressions_accepted(self, text):
        assert check_row_filter(text) == text

    @pytest.mark.parametrize('text, message', [
        ('a > 1); DROP TABLE t; --', 'closes a parenthesis'),
        ('a > 1; DROP TABLE t', 'contains ";"'),
        ('(a > 1', 'unclosed parenthesis'),
        ("b = 'x", 'unterminated string literal'),
        ('"b = 1', 'unterminated quoted identifier'),
        ('b = $$x', 'unterminated dollar-quoted'),
        ('a /* x', 'unterminated /* comment'),
        ('a > 1 -- trailing', 'must not end the row filter'),
        ('a > 1\x00', 'NUL'),
        # PostgreSQL lexes a $ or an E after a non-ASCII character as part of an identifier
        # (issue 13, finding 6): these are not a dollar quote nor an E'' string
        ('a\u20ac$x$ = 1); COPY t TO PROGRAM $$id$$; --$x$', 'closes a parenthesis'),
        ('a\u20ac$x$ = 1 OR true; SELECT 1 --$x$\n', 'contains ";"'),
        ("x\u20acE'\\' ; SELECT 1; --'", 'contains ";"'),
        ("\u00e9E'\\' ) ; SELECT 1 --'", 'closes a parenthesis'),
    ])
    def test_other_text_refused(self, text, message):
        with pytest.raises(RowFilterError) as e:
            check_row_filter(text)
        assert message in str(e.value)

    def test_backslash_escapes_without_standard_conforming_strings(self):
        # with standard_conforming_strings=off, 'a\'' is one literal and the ; is inside it
        assert check_row_filter("b = 'a\\';'", standard_conforming_strings=False)
        with pytest.raises(RowFilterError):
            check_row_filter("b = 'a\\';'")


# ------------------------------------------------------------------------------------------
# Version gates
# ------------------------------------------------------------------------------------------

class TestVersionGates(object):
    def test_gate_table(self):
        assert FEATURE_GATES['row_filter'][0] == 150000
        assert FEATURE_GATES['column_list'][0] == 150000
        assert FEATURE_GATES['schemas'][0] == 150000
        assert FEATURE_GATES['publish_via_partition_root'][0] == 130000

    def test_features_used(self):
        s = final(tables=[{'name': 't', 'columns': ['a'], 'where': 'a > 1'}], schemas=['s'],
                  publish_via_partition_root=True)
        assert features_used(s) == ['publication', 'publish_truncate', 'publish_via_partition_root',
                                    'row_filter', 'column_list', 'schemas']
        assert features_used(final(tables=['t'], publish=['insert'])) == ['publication']

    def test_messages_name_feature_and_versions(self):
        s = final(tables=[{'name': 't', 'where': 'a > 1'}], publish_via_partition_root=False)
        assert version_problems(s, 140011) == [
            'Row filters (tables[].where) requires PostgreSQL 15 or later; '
            'the server runs PostgreSQL 14.']
        assert version_problems(s, 120000) == [
            'The publish_via_partition_root option requires PostgreSQL 13 or later; '
            'the server runs PostgreSQL 12.',
            'Row filters (tables[].where) requires PostgreSQL 15 or later; '
            'the server runs PostgreSQL 12.']
        assert version_problems(s, PG15) == []

    def test_planner_refuses_unsupported_features(self):
        s = final(schemas=['s'])
        with pytest.raises(PublicationError, match=r'Publishing schemas .* requires PostgreSQL 15'):
            plan(s, None, 140000)

    def test_gates_through_require_version(self):
        class Failed(Exception):
            pass

        class Module(object):
            def fail_json(self, msg):
                raise Failed(msg)

        class Conn(object):
            server_version = 140005

        s = final(tables=[{'name': 't', 'columns': ['a']}])
        messages = []
        for minimum, feature in version_gates(s):
            try:
                connection.require_version(Module(), Conn(), minimum, feature)
            except Failed as e:
                messages.append(str(e))
        assert messages == ['Column lists (tables[].columns) requires PostgreSQL 15 or later; '
                            'the server runs PostgreSQL 14.']


# ------------------------------------------------------------------------------------------
# Merging desired over current
# ------------------------------------------------------------------------------------------

class TestMerge(object):
    def test_create_defaults(self):
        assert final(tables=['t']) == state({('public', 't'): spec()})

    def test_unmanaged_options_keep_current(self):
        current = state({('public', 't'): spec(['a'], '(a > 1)')}, schemas=('s',), owner='bob',
                        comment='c', publish_via_partition_root=True)
        assert final(current) == dict(current, publish=ALL)

    def test_empty_list_removes_tables(self):
        current = state({('public', 't'): spec()}, schemas=('s',))
        assert final(current, tables=[])['tables'] == {}
        assert final(current, tables=[])['schemas'] == ('s',)

    def test_all_tables_to_list_and_back(self):
        current = state(all_tables=True)
        assert final(current, tables=['t'])['all_tables'] is False
        assert final(current, all_tables=False) == state()
        listed = state({('public', 't'): spec()}, schemas=('s',))
        assert final(listed, all_tables=True) == state(all_tables=True)

    def test_comment_empty_removes(self):
        assert final(state(comment='old'), comment='')['comment'] is None
        assert final(state(comment='old'))['comment'] == 'old'


# ------------------------------------------------------------------------------------------
# Planner: creation
# ------------------------------------------------------------------------------------------

class TestCreate(object):
    def test_empty_publication(self):
        assert sql_of(final()) == ['CREATE PUBLICATION "pub"']

    def test_all_tables(self):
        assert sql_of(final(all_tables=True)) == ['CREATE PUBLICATION "pub" FOR ALL TABLES']

    def test_tables_sorted_with_columns_and_filter(self):
        s = final(tables=['z.t', {'name': 'a.t', 'columns': ['x', 'y'], 'where': "y = 'q'"}])
        assert sql_of(s) == [
            'CREATE PUBLICATION "pub" FOR TABLE ONLY "a"."t" ("x", "y") WHERE (y = \'q\'), ONLY "z"."t"']

    def test_schemas(self):
        assert sql_of(final(schemas=['b', 'a'])) == [
            'CREATE PUBLICATION "pub" FOR TABLES IN SCHEMA "a", "b"']

    def test_tables_and_schemas(self):
        assert sql_of(final(tables=[{'name': 't', 'where': 'a > 1'}], schemas=['s'])) == [
            'CREATE PUBLICATION "pub" FOR TABLE ONLY "public"."t" WHERE (a > 1), TABLES IN SCHEMA "s"']

    def test_options_owner_comment(self):
        s = final(tables=['t'], publish=['insert', 'update'], publish_via_partition_root=True,
                  owner='Repl Owner', comment="it's managed")
        assert sql_of(s) == [
            'CREATE PUBLICATION "pub" FOR TABLE ONLY "public"."t" '
            'WITH (publish = \'insert, update\', publish_via_partition_root = true)',
            'ALTER PUBLICATION "pub" OWNER TO "Repl Owner"',
            'COMMENT ON PUBLICATION "pub" IS \'it\'\'s managed\'',
        ]

    def test_default_options_are_not_spelled(self):
        assert sql_of(final(publish_via_partition_root=False)) == ['CREATE PUBLICATION "pub"']

    def test_nothing_published(self):
        assert sql_of(final(publish=[])) == ['CREATE PUBLICATION "pub" WITH (publish = \'\')']


# ------------------------------------------------------------------------------------------
# Planner: changes in place
# ------------------------------------------------------------------------------------------

CURRENT = state({
    ('public', 'a'): spec(),
    ('public', 'b'): spec(['id', 'x'], '(x > 5)'),
}, schemas=('s1',), owner='postgres', comment='c', publish_via_partition_root=False)


def alter(**kw):
    return sql_of(merge_desired(desired(**kw), CURRENT), CURRENT)


class TestAlter(object):
    def test_no_change(self):
        assert alter() == []
        assert alter(tables=['a', {'name': 'b', 'columns': ['x', 'id'], 'where': '(x > 5)'}],
                     schemas=['s1'], owner='postgres', comment='c', publish_via_partition_root=False) == []

    def test_add_and_drop_tables(self):
        assert alter(tables=[{'name': 'b', 'columns': ['id', 'x'], 'where': '(x > 5)'}, 'c', 'd']) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."a"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."c", ONLY "public"."d"',
        ]

    def test_change_filter(self):
        assert alter(tables=['a', {'name': 'b', 'columns': ['id', 'x'], 'where': 'x > 6'}]) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."b"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."b" ("id", "x") WHERE (x > 6)',
        ]

    def test_change_columns(self):
        assert alter(tables=['a', {'name': 'b', 'columns': ['id'], 'where': '(x > 5)'}]) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."b"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."b" ("id") WHERE ((x > 5))',
        ]

    def test_drop_filter_and_column_list(self):
        assert alter(tables=['a', 'b']) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."b"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."b"',
        ]

    def test_add_filter_to_published_table(self):
        assert alter(tables=[{'name': 'a', 'where': 'id = 1'},
                             {'name': 'b', 'columns': ['id', 'x'], 'where': '(x > 5)'}]) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."a"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."a" WHERE (id = 1)',
        ]

    def test_changed_filters_and_columns_are_named_and_only_they_leave_with_drop(self):
        def changed(**kw):
            want = merge_desired(desired(**kw), CURRENT)
            return filter_changes(want, CURRENT), render_all(plan_drop_changed(want, CURRENT))
        assert changed() == ([], [])
        # an added or removed table is no filter change
        assert changed(tables=[{'name': 'b', 'columns': ['x', 'id'], 'where': '(x > 5)'}, 'c']) == ([], [])
        assert changed(tables=[{'name': 'a', 'where': 'id = 1'}, 'b', 'c']) == (
            [('public', 'a'), ('public', 'b')],
            ['ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."a", ONLY "public"."b"'])
        assert changed(tables=['a', {'name': 'b', 'columns': ['id'], 'where': '(x > 5)'}])[0] == [('public', 'b')]

    def test_no_filter_change_for_a_new_or_dropped_publication(self):
        want = merge_desired(desired(tables=[{'name': 'a', 'where': 'id = 1'}]), None)
        assert filter_changes(want, None) == [] and plan_drop_changed(want, None) == []
        assert filter_changes({'state': 'absent', 'name': 'pub'}, CURRENT) == []

    def test_schemas(self):
        assert alter(schemas=['s2', 's3']) == [
            'ALTER PUBLICATION "pub" DROP TABLES IN SCHEMA "s1"',
            'ALTER PUBLICATION "pub" ADD TABLES IN SCHEMA "s2", "s3"',
        ]
        assert alter(schemas=[]) == ['ALTER PUBLICATION "pub" DROP TABLES IN SCHEMA "s1"']

    def test_publish_and_partition_root(self):
        assert alter(publish=['insert', 'truncate'], publish_via_partition_root=True) == [
            'ALTER PUBLICATION "pub" SET (publish = \'insert, truncate\', publish_via_partition_root = true)']
        assert alter(publish=['insert']) == ['ALTER PUBLICATION "pub" SET (publish = \'insert\')']

    def test_owner_and_comment(self):
        assert alter(owner='alice', comment='new') == [
            'ALTER PUBLICATION "pub" OWNER TO "alice"',
            'COMMENT ON PUBLICATION "pub" IS \'new\'',
        ]
        assert alter(comment='') == ['COMMENT ON PUBLICATION "pub" IS NULL']

    def test_order_drops_options_adds(self):
        # drop a column-list table before publishing a schema; SET before ADD
        assert alter(tables=['c'], schemas=['s1', 's2'], publish_via_partition_root=True) == [
            'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."a", ONLY "public"."b"',
            'ALTER PUBLICATION "pub" SET (publish_via_partition_root = true)',
            'ALTER PUBLICATION "pub" ADD TABLES IN SCHEMA "s2"',
            'ALTER PUBLICATION "pub" ADD TABLE ONLY "public"."c"',
        ]

    def test_column_lists_compare_as_sets(self):
        current = state({('public', 't'): spec(['a', 'b'])})
        assert sql_of(state({('public', 't'): spec(['b', 'a'])}), current) == []


class TestRecreate(object):
    def test_all_tables_to_list(self):
        current = state(all_tables=True, owner='bob', comment='keep me')
        assert sql_of(merge_desired(desired(tables=['t']), current), current) == [
            'DROP PUBLICATION "pub"',
            'CREATE PUBLICATION "pub" FOR TABLE ONLY "public"."t"',
            'ALTER PUBLICATION "pub" OWNER TO "bob"',
            'COMMENT ON PUBLICATION "pub" IS \'keep me\'',
        ]

    def test_list_to_all_tables_with_new_owner(self):
        current = state({('public', 't'): spec()}, owner='bob', publish=('insert',))
        d = merge_desired(desired(all_tables=True, owner='carol', publish=['insert']), current)
        assert sql_of(d, current) == [
            'DROP PUBLICATION "pub"',
            'CREATE PUBLICATION "pub" FOR ALL TABLES WITH (publish = \'insert\')',
            'ALTER PUBLICATION "pub" OWNER TO "carol"',
        ]


class TestAbsent(object):
    def test_drop(self):
        assert sql_of(desired(state='absent'), CURRENT) == ['DROP PUBLICATION "pub"']
        assert sql_of(desired(state='absent', cascade=True), CURRENT) == ['DROP PUBLICATION "pub" CASCADE']

    def test_missing_is_no_change(self):
        assert sql_of(desired(state='absent'), None) == []


class TestHostileNames(object):
    @pytest.mark.parametrize('name, quoted', [
        ('Weird "Name"; DROP TABLE x;--', '"Weird ""Name""; DROP TABLE x;--"'),
        ('MixedCase', '"MixedCase"'),
        ('with space', '"with space"'),
        (u'ünïcødé', u'"ünïcødé"'),
        ("it's", '"it\'s"'),
        ('n' * 63, '"%s"' % ('n' * 63)),
    ])
    def test_quoted_everywhere(self, name, quoted):
        d = desired(name=name, owner=name, comment=name,
                    tables=[{'name': '%s.%s' % (name, name), 'columns': [name]}])
        assert d['tables'] == {(name, name): {'columns': (name,), 'where': None, 'replica_identity': None}}
        assert sql_of(merge_desired(d, None)) == [
            'CREATE PUBLICATION %s FOR TABLE ONLY %s.%s (%s)' % (quoted, quoted, quoted, quoted),
            'ALTER PUBLICATION %s OWNER TO %s' % (quoted, quoted),
            "COMMENT ON PUBLICATION %s IS '%s'" % (quoted, name.replace("'", "''")),
        ]
        assert sql_of(merge_desired(desired(name=name, schemas=[name]), None)) == [
            'CREATE PUBLICATION %s FOR TABLES IN SCHEMA %s' % (quoted, quoted)]
        current = merge_desired(desired(name=name, tables=['%s.%s' % (name, name)]), None)
        assert sql_of(merge_desired(desired(name=name, tables=[]), current), current) == [
            'ALTER PUBLICATION %s DROP TABLE ONLY %s.%s' % (quoted, quoted, quoted)]

    def test_dotted_quoted_names_from_strings(self):
        d = desired(tables=['"my.schema"."t ""x"""', 'Sales.Order Items'])
        assert sql_of(merge_desired(d, None)) == [
            'CREATE PUBLICATION "pub" FOR TABLE ONLY "Sales"."Order Items", ONLY "my.schema"."t ""x"""']

    def test_replica_identity_statements(self):
        fixes = [('s', 'Weird "t"', ('full',)), ('public', 'u', ('index', 'u "key"')),
                 ('public', 'v', ('default',))]
        assert render_all(plan_replica_identity(fixes)) == [
            'ALTER TABLE ONLY "s"."Weird ""t""" REPLICA IDENTITY FULL',
            'ALTER TABLE ONLY "public"."u" REPLICA IDENTITY USING INDEX "u ""key"""',
            'ALTER TABLE ONLY "public"."v" REPLICA IDENTITY DEFAULT',
        ]


# ------------------------------------------------------------------------------------------
# Catalog rows, return values, filter adoption
# ------------------------------------------------------------------------------------------

ROW = {
    'exists': True, 'name': 'pub', 'owner': 'postgres', 'puballtables': False,
    'pubinsert': True, 'pubupdate': False, 'pubdelete': True, 'pubtruncate': False,
    'pubviaroot': False, 'comment': None, 'schemas': ['b', 'a'],
    'tables': [{'schema': 'public', 'name': 't', 'columns': ['id', 'x'], 'where': '(x > 1)'},
               {'schema': 'my.s', 'name': 'u', 'columns': None, 'where': None}],
}


class TestCatalogState(object):
    def test_state_from_catalog(self):
        assert state_from_catalog(ROW) == state(
            {('public', 't'): spec(['id', 'x'], '(x > 1)'), ('my.s', 'u'): spec()},
            schemas=('a', 'b'), publish=('insert', 'delete'), owner='postgres',
            publish_via_partition_root=False)
        assert state_from_catalog({'exists': False}) is None

    def test_public_state(self):
        assert public_state(state_from_catalog(ROW)) == {
            'name': 'pub', 'owner': 'postgres', 'all_tables': False,
            'tables': [{'name': '"my.s".u', 'columns': None, 'where': None},
                       {'name': 'public.t', 'columns': ['id', 'x'], 'where': '(x > 1)'}],
            'schemas': ['a', 'b'], 'publish': ['insert', 'delete'],
            'publish_via_partition_root': False, 'publish_generated_columns': None, 'comment': None,
        }
        assert public_state(None) == {}
        predicted = public_state(final(), server_version=PG15, creator='me')
        assert predicted['owner'] == 'me' and predicted['publish_via_partition_root'] is False

    def test_adopt_equivalent_filters(self):
        current = state({('public', 't'): spec(None, '(a > 5)'), ('public', 'u'): spec(None, '(b > 1)')})
        wanted = state({('public', 't'): spec(None, 'a > 5'), ('public', 'u'): spec(None, 'b > 2'),
                        ('public', 'v'): spec(None, 'c')})
        asked = []

        def same(key, d, c):
            asked.append(key)
            return key == ('public', 't')
        adopted = adopt_equivalent_filters(wanted, current, same)
        assert adopted['tables'][('public', 't')]['where'] == '(a > 5)'
        assert adopted['tables'][('public', 'u')]['where'] == 'b > 2'
        assert asked == [('public', 't'), ('public', 'u')]
        assert wanted['tables'][('public', 't')]['where'] == 'a > 5'  # input untouched
        assert sql_of(adopted, current)[0] == 'ALTER PUBLICATION "pub" DROP TABLE ONLY "public"."u"'


# ------------------------------------------------------------------------------------------
# Validation against catalog facts
# ------------------------------------------------------------------------------------------

def table_row(schema, name, kind='r', columns=('id', 'a', 'b'), persistence='p'):
    return {'schema': schema, 'name': name, 'kind': kind, 'persistence': persistence,
            'columns': list(columns) if kind else None}


def leaf(schema, name, listed=True, replident='d', pk=('id',), ident_key=None, ident_index=None,
         unique_indexes=None):
    return {'schema': schema, 'name': name, 'listed': [schema, name] if listed is True else listed,
            'replident': replident, 'pk': list(pk) if pk else None,
            'ident_key': list(ident_key) if ident_key else None, 'ident_index': ident_index,
            'unique_indexes': unique_indexes}


class TestValidation(object):
    def test_all_missing_objects_in_one_message(self):
        resolved = {'tables': [table_row('public', 'gone', kind=None), table_row('public', 'v', kind='v'),
                               table_row('s', 'x y', kind=None), table_row('public', 'u', persistence='u')],
                    'missing_schemas': ['nope', 'Nope2']}
        assert missing_objects_message(resolved) == (
            'Cannot publish: tables that do not exist: public.gone, s.x y; relations that are not '
            'tables (views, sequences, foreign tables... cannot be published): public.v; unlogged '
            'or temporary tables (cannot be published): public.u; schemas that do not exist: '
            'nope, Nope2.')
        assert missing_objects_message({'tables': [table_row('public', 't')]}) is None

    def test_order_columns(self):
        s = state({('public', 't'): spec(['b', 'id'])})
        ordered = order_columns(s, {'tables': [table_row('public', 't')]})
        assert ordered['tables'][('public', 't')]['columns'] == ('id', 'b')
        with pytest.raises(PublicationError, match='public.t has no column zz, yy'):
            order_columns(state({('public', 't'): spec(['zz', 'id', 'yy'])}),
                          {'tables': [table_row('public', 't')]})

    def test_structure_problems(self):
        s = state({('public', 'p'): spec(None, 'a > 1'), ('public', 't'): spec(['id'])}, schemas=('s',))
        resolved = {'tables': [table_row('public', 'p', kind='p'), table_row('public', 't')]}
        with pytest.raises(PublicationError) as e:
            structure_problems(s, resolved, {('public', 'p'): ('full',)})
        message = str(e.value)
        assert 'column lists cannot be used in a publication that also publishes schemas (tables ' \
               'with a column list: public.t)' in message
        assert 'needs publish_via_partition_root: true (tables: public.p)' in message
        assert 'replica_identity cannot be set on a partitioned table' in message
        structure_problems(state({('public', 'p'): spec(None, 'a > 1')}, publish_via_partition_root=True),
                           resolved, {})

    def test_current_identity(self):
        assert current_identity(leaf('s', 't')) == ('key', ['id'])
        assert current_identity(leaf('s', 't', pk=None)) == ('none', 'no primary key')
        assert current_identity(leaf('s', 't', replident='f')) == ('full', None)
        assert current_identity(leaf('s', 't', replident='n')) == ('none', 'REPLICA IDENTITY NOTHING')
        assert current_identity(leaf('s', 't', replident='i', ident_key=['u'])) == ('key', ['u'])
        assert current_identity(leaf('s', 't', replident='i')) == ('none', 'its replica identity index is gone')

    def test_tables_without_identity_refused_all_named(self):
        s = state({('public', 'a'): spec(), ('public', 'b'): spec(['a']), ('public', 'c'): spec(['id', 'a'])})
        resolved = {'leaves': [leaf('public', 'a', pk=None), leaf('public', 'b', replident='n'),
                               leaf('public', 'c', replident='f'), leaf('other', 'x', listed=None, pk=None)]}
        with pytest.raises(PublicationError) as e:
            plan_identity(s, resolved, None, {}, True)
        assert str(e.value) == (
            'With update or delete published, PostgreSQL accepts this publication but then refuses '
            'every UPDATE and DELETE on these tables: no replica identity: other.x (no primary key), '
            'public.a (no primary key), public.b (REPLICA IDENTITY NOTHING); column list on a table '
            'with REPLICA IDENTITY FULL (which allows none): public.c. Add a primary key, set '
            'replica_identity (full or index:<name>), fix the column list, leave update and delete '
            'out of publish, or set check_replica_identity: false.')

    def test_no_check_when_only_inserts_or_disabled(self):
        resolved = {'leaves': [leaf('public', 'a', pk=None)]}
        assert plan_identity(state({('public', 'a'): spec()}, publish=('insert',)), resolved, None, {}, True)[0] == []
        assert plan_identity(state({('public', 'a'): spec()}), resolved, None, {}, False)[0] == []

    def test_top_level_fix_only_for_tables_without_identity(self):
        resolved = {'leaves': [leaf('public', 'a', pk=None), leaf('public', 'b'),
                               leaf('public', 'p1', listed=['public', 'p'], replident='n')]}
        s = state({('public', 'a'): spec(), ('public', 'b'): spec(), ('public', 'p'): spec()})
        fixes, identity = plan_identity(s, resolved, ('full',), {}, True)
        assert fixes == [('public', 'a', ('full',)), ('public', 'p1', ('full',))]
        assert identity[('public', 'b')] == ('key', ['id'])
        assert identity[('public', 'p1')] == ('full', None)
        # nothing to fix when only inserts are published
        assert plan_identity(dict(s, publish=('insert',)), resolved, ('full',), {}, True)[0] == []

    def test_per_table_index_identity(self):
        resolved = {'leaves': [leaf('public', 'a', pk=None, unique_indexes={'a_u': ['u']}),
                               leaf('public', 'b', replident='i', ident_key=['u'], ident_index='b_u',
                                    unique_indexes={'b_u': ['u']})]}
        s = state({('public', 'a'): spec(['u']), ('public', 'b'): spec()})
        per_table = {('public', 'a'): ('index', 'a_u'), ('public', 'b'): ('index', 'b_u')}
        fixes, identity = plan_identity(s, resolved, None, per_table, True)
        assert fixes == [('public', 'a', ('index', 'a_u'))]
        assert identity[('public', 'a')] == ('key', ['u'])
        with pytest.raises(PublicationError, match=r'public.a \(index nope\)'):
            plan_identity(s, resolved, None, {('public', 'a'): ('index', 'nope')}, True)

    def test_column_list_must_cover_key(self):
        resolved = {'leaves': [leaf('public', 'a', pk=('id', 'k')),
                               leaf('public', 'p1', listed=['public', 'p'], pk=('pid',))]}
        s = state({('public', 'a'): spec(['id', 'x']), ('public', 'p'): spec(['x'])})
        with pytest.raises(PublicationError) as e:
            plan_identity(s, resolved, None, {}, True)
        assert 'column list without every replica identity column: public.a lacks k, ' \
               'public.p (partition public.p1) lacks pid' in str(e.value)

    def test_filter_key_columns(self):
        resolved = {'leaves': [leaf('public', 'a'), leaf('public', 'f', replident='f'),
                               leaf('public', 'p1', listed=['public', 'p'], pk=('id', 'x')),
                               leaf('public', 'p2', listed=['public', 'p'], pk=('id', 'y'))]}
        s = state({('public', 'a'): spec(None, 'a > 1'), ('public', 'f'): spec(None, 'b'),
                   ('public', 'p'): spec(None, 'x > 1'), ('public', 'n'): spec()})
        fixes, identity = plan_identity(s, resolved, None, {}, True)
        assert filter_key_columns(s, resolved, identity, True) == {
            ('public', 'a'): ['id'], ('public', 'p'): ['id']}
        assert filter_key_columns(s, resolved, identity, False) == {}
        assert filter_key_columns(dict(s, publish=('insert',)), resolved, identity, True) == {}


def test_percent_signs_in_filters_are_sent_and_shown_verbatim():
    s = final(tables=[{'name': 't', 'where': "name LIKE '%smith%%' OR name = 'x%s'"}])
    statements = plan(s, None, PG15)
    assert [st.params for st in statements] == [()]  # executed without %-interpolation
    assert render_all(statements) == [
        'CREATE PUBLICATION "pub" FOR TABLE ONLY "public"."t" WHERE (name LIKE \'%smith%%\' OR name = \'x%s\')']


def test_identity_facts_needed_only_to_check_or_change():
    d = desired(tables=['t', {'name': 'u', 'replica_identity': 'full'}])
    assert table_identities(d) == {('public', 'u'): ('full',)}
    assert needs_identity_facts(final(), desired(), {}) is True
    assert needs_identity_facts(final(publish=['insert']), desired(publish=['insert']), {}) is False
    assert needs_identity_facts(final(), desired(check_replica_identity=False), {}) is False
    assert needs_identity_facts(final(publish=['insert']), desired(replica_identity='full'), {}) is True
    assert needs_identity_facts(final(publish=['insert']), d, table_identities(d)) is True


class TestGeneratedColumns(object):
    """publish_generated_columns (PostgreSQL 18): created, altered both ways, read back, gated."""

    def test_create_and_alter(self):
        wanted = final(tables=['t'], publish_generated_columns='stored')
        assert sql_of(wanted, version=PG18)[0].endswith('WITH (publish_generated_columns = stored)')
        current = state({('public', 't'): spec()}, publish_generated_columns='none')
        assert sql_of(final(current, publish_generated_columns='stored'), current, version=PG18) == [
            'ALTER PUBLICATION "pub" SET (publish_generated_columns = stored)']
        stored = dict(current, publish_generated_columns='stored')
        assert sql_of(final(stored, publish_generated_columns='none'), stored, version=PG18) == [
            'ALTER PUBLICATION "pub" SET (publish_generated_columns = none)']
        assert sql_of(final(stored), stored, version=PG18) == []  # unset: not managed

    def test_catalog_and_gate(self):
        assert state_from_catalog(dict(ROW, pubgencols='s'))['publish_generated_columns'] == 'stored'
        assert state_from_catalog(dict(ROW, pubgencols='n'))['publish_generated_columns'] == 'none'
        problems = version_problems(final(tables=['t'], publish_generated_columns='stored'), PG15)
        assert len(problems) == 1 and 'publish_generated_columns' in problems[0] and '18' in problems[0]
        assert version_problems(final(tables=['t'], publish_generated_columns='none'), PG15) == []
