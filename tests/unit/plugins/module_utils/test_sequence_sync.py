# -*- coding: utf-8 -*-
"""Planner of pg_sequence_sync: pairs, positions, never backwards, statements, without a database."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.sequence_sync import (
    Link, SequenceError, SequenceState, diff, parse_sequences, parse_tables, plan, resolve_pairs,
    setval_statement, values_query)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, bind, render, render_all)

HOSTILE = ('Wé"ird; Schema', 'Seq %s; DROP TABLE x --')
LONG = ('s' * 63, 'é' * 31 + 'x')
BIG = 9223372036854775807


def state(key, last, called=True, inc=1, lo=1, hi=BIG):
    return SequenceState(key, last, called, inc, lo, hi)


ORDERS = ('sales', 'orders')
ORDERS_SEQ = ('sales', 'orders_id_seq')


def pair(source=ORDERS_SEQ, target=None, table=None, column=None):
    return {'source': source, 'target': target or source, 'table': table, 'column': column}


# ---- options ---------------------------------------------------------------------------------

def test_parse_options():
    assert parse_tables(['sales.orders', 'plain', 'plain', '"my.s"."T"']) == [
        ORDERS, ('public', 'plain'), ('my.s', 'T')]
    assert parse_sequences(['a.s', {'name': 'b.s', 'target': 'C.Other Seq'}, {'name': 's2'}, 'a.s']) == [
        (('a', 's'), ('a', 's')), (('b', 's'), ('C', 'Other Seq')), (('public', 's2'), ('public', 's2'))]


@pytest.mark.parametrize('items, fragment', [
    ([{'name': 'a.s', 'tagret': 'b.s'}], 'unknown key(s) tagret'),
    ([{'target': 'b.s'}], 'has no name'),
    (['a.b.c'], 'not a valid schema.table'),
    ([42], 'must be a schema.name string'),
    (['x.' + 'é' * 32], 'longer than 63 bytes'),
])
def test_parse_sequences_errors(items, fragment):
    with pytest.raises(SequenceError) as e:
        parse_sequences(items)
    assert fragment in str(e.value)


# ---- positions and the never-backwards rule ---------------------------------------------------

def test_position_is_the_last_value_handed_out():
    assert state(ORDERS_SEQ, 10).position == 10
    assert state(ORDERS_SEQ, 1, called=False).position == 0          # fresh sequence
    assert state(ORDERS_SEQ, 500, called=False).position == 499      # RESTART WITH 500
    assert state(ORDERS_SEQ, -1, called=False, inc=-1, lo=-BIG, hi=-1).position == 0


def test_moves_forward_to_the_source_position():
    results, stmts = plan([pair(table='sales.orders', column='id')],
                          {ORDERS_SEQ: state(ORDERS_SEQ, 10500)}, {ORDERS_SEQ: state(ORDERS_SEQ, 1, False)})
    assert results == [{'name': 'sales.orders_id_seq', 'source': 'sales.orders_id_seq',
                        'table': 'sales.orders', 'column': 'id', 'source_value': 10500,
                        'target_value': 0, 'new_value': 10500, 'changed': True}]
    assert render_all(stmts) == [
        "SELECT pg_catalog.setval('\"sales\".\"orders_id_seq\"'::regclass, 10500, true) "
        'FROM "sales"."orders_id_seq" WHERE CASE WHEN is_called THEN last_value '
        'ELSE last_value - 1 END < 10500']


@pytest.mark.parametrize('source, target, margin, new', [
    (state(ORDERS_SEQ, 100), state(ORDERS_SEQ, 100), 0, None),          # equal: nothing
    (state(ORDERS_SEQ, 100), state(ORDERS_SEQ, 5000), 0, None),         # target ahead: never back
    (state(ORDERS_SEQ, 100), state(ORDERS_SEQ, 5000), 1000, None),      # still behind with margin
    (state(ORDERS_SEQ, 100), state(ORDERS_SEQ, 150), 1000, 1100),       # margin pushes it ahead
    (state(ORDERS_SEQ, 1, False), state(ORDERS_SEQ, 1, False), 0, None),  # both unused
    (state(ORDERS_SEQ, 1, False), state(ORDERS_SEQ, 1, False), 10, 10),
    (state(ORDERS_SEQ, 101), state(ORDERS_SEQ, 100), 0, 101),
    # descending sequences move down
    (state(ORDERS_SEQ, -50, inc=-1, lo=-BIG, hi=-1), state(ORDERS_SEQ, -10, inc=-1, lo=-BIG, hi=-1), 5, -55),
    (state(ORDERS_SEQ, -5, inc=-1, lo=-BIG, hi=-1), state(ORDERS_SEQ, -10, inc=-1, lo=-BIG, hi=-1), 0, None),
    # a different increment on the target does not matter
    (state(ORDERS_SEQ, 1000, inc=10), state(ORDERS_SEQ, 3, inc=1), 0, 1000),
])
def test_never_backwards(source, target, margin, new):
    results, stmts = plan([pair()], {ORDERS_SEQ: source}, {ORDERS_SEQ: target}, margin)
    assert results[0]['new_value'] == new
    assert results[0]['changed'] is (new is not None)
    assert len(stmts) == (0 if new is None else 1)
    if new is not None:
        shown = render(stmts[0])
        assert (' > ' if target.increment < 0 else ' < ') + str(new) in shown


def test_descending_statement_guards_the_other_way():
    target = state(ORDERS_SEQ, -10, inc=-2, lo=-BIG, hi=-1)
    assert render(setval_statement(target, -55)).endswith(
        'ELSE last_value - -2 END > -55')


@pytest.mark.parametrize('source, target, margin, fragment', [
    (state(ORDERS_SEQ, 2147483600), state(ORDERS_SEQ, 1, hi=2147483647), 100,
     'cannot take 2147483700 (the source position 2147483600 with margin 100): it is outside its range 1..2147483647'),
    (state(ORDERS_SEQ, 10, inc=-1, lo=-BIG, hi=-1), state(ORDERS_SEQ, 10), 0, 'counts down on the source but up'),
])
def test_plan_errors(source, target, margin, fragment):
    with pytest.raises(SequenceError) as e:
        plan([pair()], {ORDERS_SEQ: source}, {ORDERS_SEQ: target}, margin)
    assert fragment in str(e.value)


def test_missing_on_either_side_and_negative_margin():
    with pytest.raises(SequenceError) as e:
        plan([pair(), pair(('a', 'b'))], {}, {ORDERS_SEQ: state(ORDERS_SEQ, 1)})
    assert e.value.messages == ['sequence sales.orders_id_seq does not exist on the source.',
                                'sequence a.b does not exist on the source.']
    with pytest.raises(SequenceError):
        plan([pair()], {ORDERS_SEQ: state(ORDERS_SEQ, 1)}, {}, -1)


# ---- which source sequence goes where --------------------------------------------------------

def test_pairs_by_column_then_by_name():
    src_links = [Link(ORDERS, 'id', ORDERS_SEQ), Link(ORDERS, 'no', ('sales', 'order_no')),
                 Link(('sales', 'items'), 'id', ('sales', 'items_id_seq'))]
    dst_links = [Link(ORDERS, 'id', ('sales', 'orders_id_seq1'))]  # recreated under another name
    pairs = resolve_pairs([ORDERS, ('sales', 'items')], [(('x', 'a'), ('y', 'b'))],
                          [ORDERS, ('sales', 'items')], src_links, dst_links,
                          {('sales', 'orders_id_seq1'), ('sales', 'order_no'), ('sales', 'items_id_seq'),
                           ('y', 'b')})
    assert [(p['source'], p['target'], p['table'], p['column']) for p in pairs] == [
        (ORDERS_SEQ, ('sales', 'orders_id_seq1'), 'sales.orders', 'id'),
        (('sales', 'order_no'), ('sales', 'order_no'), 'sales.orders', 'no'),
        (('sales', 'items_id_seq'), ('sales', 'items_id_seq'), 'sales.items', 'id'),
        (('x', 'a'), ('y', 'b'), None, None)]


def test_shared_sequence_is_copied_once():
    links = [Link(ORDERS, 'id', ORDERS_SEQ), Link(('sales', 'archive'), 'id', ORDERS_SEQ)]
    pairs = resolve_pairs([ORDERS, ('sales', 'archive')], [(ORDERS_SEQ, ORDERS_SEQ)],
                          [ORDERS, ('sales', 'archive')], links, links, {ORDERS_SEQ})
    assert len(pairs) == 1 and pairs[0]['column'] == 'id' and pairs[0]['table'] == 'sales.orders'


def test_pair_problems_are_all_named():
    links = [Link(ORDERS, 'id', ORDERS_SEQ), Link(ORDERS, 'no', ('sales', 'other'))]
    with pytest.raises(SequenceError) as e:
        resolve_pairs([ORDERS, ('sales', 'gone')], [(('a', 's'), ('a', 's')), (('b', 's'), ORDERS_SEQ)],
                      [ORDERS], links, [], {ORDERS_SEQ})
    assert e.value.messages == [
        'table(s) sales.gone do not exist on the source.',
        'sequence sales.other of sales.orders.no has no counterpart on the target (no sequence '
        'used by that column, none of that name).',
        'sequence a.s does not exist on the target.',
        'target sequence sales.orders_id_seq would receive both sales.orders_id_seq and b.s.']


# ---- hostile names ---------------------------------------------------------------------------

@pytest.mark.parametrize('key', [HOSTILE, LONG, ('Mixed Case', 'Ünï "q"')])
def test_hostile_names_are_quoted(key):
    stmt = setval_statement(state(key, 1), 42)
    shown = render(stmt)
    ident = '"%s"."%s"' % (key[0].replace('"', '""'), key[1].replace('"', '""'))
    assert shown.startswith("SELECT pg_catalog.setval('%s'::regclass, 42, true) FROM %s WHERE"
                            % (ident.replace("'", "''"), ident))
    # the composable handed to psycopg2 has no placeholders left (a % in a name is harmless)
    assert 'Literal' in repr(bind(stmt))
    q = render(Statement(values_query([key, ORDERS_SEQ])))
    assert q == ('SELECT 0 AS i, last_value, is_called FROM %s UNION ALL '
                 'SELECT 1 AS i, last_value, is_called FROM "sales"."orders_id_seq"' % ident)
    assert values_query([]) is None


def test_diff():
    results, _s = plan([pair(), pair(('a', 'b'))],
                       {ORDERS_SEQ: state(ORDERS_SEQ, 7), ('a', 'b'): state(('a', 'b'), 1)},
                       {ORDERS_SEQ: state(ORDERS_SEQ, 3), ('a', 'b'): state(('a', 'b'), 9)})
    assert diff(results) == {'before': {'sequences': {'sales.orders_id_seq': 3, 'a.b': 9}},
                             'after': {'sequences': {'sales.orders_id_seq': 7, 'a.b': 9}}}
