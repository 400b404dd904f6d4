"""Sync role planner and SCRAM verifiers: every transition, no-op, hostile names."""
import base64
import re

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import (
    build_verifier, is_verifier, parse_verifier, saslprep, verify_password)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, render, render_all)
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.sync_role import (
    READ_PRIVILEGES, WRITE_PRIVILEGES, Dependency, DesiredRole, RoleState, SequenceState,
    SyncRoleError, TableState, blockers_message, check_role_name, desired_privileges,
    granted_sequences, granted_tables, missing_tables, password_update_needed, plan_drop,
    plan_privileges, plan_role, plan_sequence_privileges, privilege_changes, role_after,
    sequence_privilege_changes, usage_needed)

PASSWORD = 'S3cret-pässword'
VERIFIER_FORMAT = re.compile(r'^SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):'
                             r'([A-Za-z0-9+/=]+)$')
# made by PostgreSQL 15 (CREATE ROLE ... PASSWORD '<password>')
SERVER_VERIFIERS = {
    'pässwörd': 'SCRAM-SHA-256$4096:RE/Zh3I2ykkRvTo4YErh6g==$WTBYVeSxSEjTNQl25tcGvjh42YUfRgsC'
                'QC0UYE8E9Mc=:ysJ2wf5YRXe8CFHQ4DZbxfgVKrkW3I3LS5H+kIvilbw=',
    'plain-ascii': 'SCRAM-SHA-256$4096:DqAIiP/efV5W3dmJhdc+GA==$SggOrlp6jRX9zYT7ABVIXT94bKAK8Y+'
                   '3sY3MRRSWOoU=:f+Tb+/lCMoa+rld9FZYnxE9pVERej5TAvNlvpIRfwD4=',
}
HOSTILE = ['plain', 'Mixed Case', 'with "quotes"', "semi;colon'; DROP ROLE x;--", 'ünïcødé ✓',
           'x' * 63, 'é' * 31 + 'x']


# ---- SCRAM ------------------------------------------------------------------------------------

def test_verifier_format():
    verifier = build_verifier(PASSWORD)
    match = VERIFIER_FORMAT.match(verifier)
    assert match, verifier
    assert len(base64.b64decode(match.group(1))) == 16
    assert len(base64.b64decode(match.group(2))) == 32
    assert len(base64.b64decode(match.group(3))) == 32
    assert PASSWORD not in verifier


def test_verifier_round_trip_and_random_salt():
    first, second = build_verifier(PASSWORD), build_verifier(PASSWORD)
    assert first != second
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + 'x', first)
    assert not verify_password('', first)


def test_deterministic_with_given_salt_and_iterations():
    salt = b'0123456789abcdef'
    assert build_verifier('pw', salt=salt) == build_verifier('pw', salt=salt)
    other = build_verifier('pw', salt=salt, iterations=10000)
    assert other.startswith('SCRAM-SHA-256$10000:') and verify_password('pw', other)


@pytest.mark.parametrize('password, verifier', sorted(SERVER_VERIFIERS.items()))
def test_verifies_verifiers_made_by_postgresql(password, verifier):
    assert verify_password(password, verifier)
    assert not verify_password(password.upper(), verifier)


@pytest.mark.parametrize('stored', [
    None, '', 'md5' + '0' * 32, 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5',
    'SCRAM-SHA-256$x:c2FsdA==$' + 'A' * 44 + ':' + 'A' * 44,
    'SCRAM-SHA-256$4096:!!!$' + 'A' * 44 + ':' + 'A' * 44, 'SCRAM-SHA-256$4096',
    'SCRAM-SHA-256$0:c2FsdA==$' + 'A' * 44 + ':' + 'A' * 44,
])
def test_malformed_or_other_stored_passwords_never_match(stored):
    assert parse_verifier(stored) is None
    assert not is_verifier(stored)
    assert not verify_password('anything', stored)


@pytest.mark.parametrize('password, prepared', [
    ('ascii only\x07', b'ascii only\x07'),               # ASCII is used as is
    ('a\u00a0b\u00e9', 'a b\u00e9'.encode('utf-8')),     # non-ASCII space -> space
    ('soft\u00adhyphen\u00e9', 'softhyphen\u00e9'.encode('utf-8')),  # mapped to nothing
    ('\ufb01x\u00e9', 'fix\u00e9'.encode('utf-8')),      # NFKC
    ('e\u0301', '\u00e9'.encode('utf-8')),               # NFKC composes
    ('\u00e9\x07', '\u00e9\x07'.encode('utf-8')),        # prohibited: raw bytes
    ('\u0627a', '\u0627a'.encode('utf-8')),              # bidi violation: raw bytes
    ('\u0627\u0628', '\u0627\u0628'.encode('utf-8')),    # RandAL only: fine
    ('\u00ad', '\u00ad'.encode('utf-8')),                # empty after mapping: raw bytes
])
def test_saslprep_like_postgresql(password, prepared):
    assert saslprep(password) == prepared


def test_saslprep_invalid_utf8_bytes_are_used_raw():
    assert saslprep(b'\xff\xfe') == b'\xff\xfe'


# ---- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_role_names_are_quoted(name):
    assert check_role_name(name) == name
    statements = plan_role(DesiredRole(name), RoleState(exists=False))
    assert render(statements[0]) == 'CREATE ROLE "%s" WITH LOGIN NOREPLICATION' \
        % name.replace('"', '""')


@pytest.mark.parametrize('name', ['x' * 64, 'é' * 32, '', 'a\x00b', 'public', 'none', 'pg_sync'])
def test_refused_role_names(name):
    with pytest.raises(SyncRoleError):
        check_role_name(name)


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_table_names(name):
    wanted = desired_privileges(['%s.%s' % (_part(name), _part(name))], None)
    assert list(wanted) == [(name, name)]
    statements = plan_privileges('r', wanted, {(name, name): TableState(schema_usage=True)})
    quoted = '"%s"' % name.replace('"', '""')
    assert render(statements[0]) == 'GRANT SELECT ON TABLE %s.%s TO "r"' % (quoted, quoted)


def _part(name):
    return '"%s"' % name.replace('"', '""') if '.' in name or name.startswith('"') else name


def test_table_names_too_long_or_malformed_are_all_named():
    with pytest.raises(SyncRoleError) as e:
        desired_privileges(['public.' + 'x' * 64, 'a.b.c', 'ok'], ['"open'])
    text = str(e.value)
    assert 'longer than 63 bytes' in text and "'a.b.c'" in text and 'unterminated' in text


def test_table_in_both_lists_gets_write_privileges():
    wanted = desired_privileges(['s.t', 'u'], ['s.t'])
    assert wanted == {('s', 't'): WRITE_PRIVILEGES, ('public', 'u'): READ_PRIVILEGES}


# ---- role -------------------------------------------------------------------------------------

def existing(**attrs):
    state = dict(exists=True, login=True, replication=True, connection_limit=-1,
                 password=build_verifier(PASSWORD))
    state.update(attrs)
    return RoleState(**state)


def desired(**attrs):
    spec = dict(name='sync', login=True, replication=True, password=PASSWORD)
    spec.update(attrs)
    return DesiredRole(**spec)


def test_create_sends_verifier_as_secret():
    statements = plan_role(desired(connection_limit=5), RoleState(exists=False))
    assert len(statements) == 1
    stmt = statements[0]
    assert render(stmt) == ('CREATE ROLE "sync" WITH LOGIN REPLICATION CONNECTION LIMIT 5 '
                            "PASSWORD '********'")
    secret = [p for p in stmt.params if isinstance(p, Secret)][0]
    assert verify_password(PASSWORD, secret.value)
    assert PASSWORD in stmt.secrets() and secret.value in stmt.secrets()
    assert PASSWORD not in render(stmt) and secret.value not in render(stmt)
    assert not stmt.autocommit


def test_create_without_password_or_login():
    assert render(plan_role(desired(password=None, login=False, replication=False),
                            RoleState(exists=False))[0]) \
        == 'CREATE ROLE "sync" WITH NOLOGIN NOREPLICATION'


def test_existing_role_is_stripped_of_powers_and_dangerous_memberships():
    current = existing(powers=['bypassrls', 'createdb', 'createrole'],
                       memberships=['pg_read_all_data', 'admins'])
    shown = [render(s) for s in plan_role(desired(), current)]
    assert shown == ['ALTER ROLE "sync" WITH NOCREATEROLE NOCREATEDB NOBYPASSRLS',
                     'REVOKE "admins" FROM "sync"', 'REVOKE "pg_read_all_data" FROM "sync"']
    after = role_after(desired(), current)
    assert after['removed_powers'] == ['createrole', 'createdb', 'bypassrls']
    assert after['removed_memberships'] == ['admins', 'pg_read_all_data']
    only_membership = [render(s) for s in plan_role(desired(), existing(
        memberships=['pg_execute_server_program']))]
    assert only_membership == ['REVOKE "pg_execute_server_program" FROM "sync"']


def test_no_op_when_everything_matches():
    assert plan_role(desired(), existing()) == []
    assert plan_role(desired(connection_limit=-1), existing()) == []
    assert plan_role(desired(password=None), existing(password=None)) == []


def test_alter_only_what_differs():
    assert [render(s) for s in plan_role(desired(replication=False), existing())] \
        == ['ALTER ROLE "sync" WITH NOREPLICATION']
    assert [render(s) for s in plan_role(desired(login=False, connection_limit=2), existing())] \
        == ['ALTER ROLE "sync" WITH NOLOGIN CONNECTION LIMIT 2']
    assert plan_role(desired(connection_limit=None), existing(connection_limit=7)) == []


def test_password_change_detected_against_stored_verifier():
    statements = plan_role(desired(password='new-one'), existing())
    assert [render(s) for s in statements] == ['ALTER ROLE "sync" WITH PASSWORD \'********\'']
    assert verify_password('new-one', statements[0].params[0].value)


def test_md5_or_missing_stored_password_is_replaced():
    assert password_update_needed(desired(), existing(password='md5' + 'a' * 32))
    assert password_update_needed(desired(), existing(password=None))


def test_update_password_on_create():
    assert plan_role(desired(password='other', update_password='on_create'), existing()) == []
    assert password_update_needed(desired(update_password='on_create'), RoleState())


def test_unreadable_password_is_always_set_unless_on_create():
    unreadable = existing(password=None, password_readable=False)
    assert password_update_needed(desired(), unreadable)
    assert not password_update_needed(desired(update_password='on_create'), unreadable)


def test_superuser_refused():
    with pytest.raises(SyncRoleError) as e:
        plan_role(desired(), existing(superuser=True))
    assert 'superuser' in str(e.value)


# ---- privileges -------------------------------------------------------------------------------

def tables(*entries):
    return dict((key, TableState(**attrs)) for key, attrs in entries)


def test_new_role_gets_usage_and_one_grant_per_privilege_set():
    wanted = desired_privileges(['s.a', 's.b', 'public.c'], ['w.x', 'w.y'])
    current = dict((k, TableState(schema_usage=None)) for k in wanted)
    assert [render(s) for s in plan_privileges('sync', wanted, current)] == [
        'GRANT USAGE ON SCHEMA "public", "s", "w" TO "sync"',
        'GRANT SELECT ON TABLE "public"."c", "s"."a", "s"."b" TO "sync"',
        'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "w"."x", "w"."y" TO "sync"',
    ]


def test_no_op_when_privileges_match():
    wanted = desired_privileges(['s.a'], ['s.b'])
    current = tables((('s', 'a'), dict(privileges=['SELECT'], schema_usage=True)),
                     (('s', 'b'), dict(privileges=sorted(WRITE_PRIVILEGES), schema_usage=True)))
    assert plan_privileges('sync', wanted, current) == []


def test_changed_list_revokes_others():
    wanted = desired_privileges(['s.b'], None)
    current = tables((('s', 'a'), dict(privileges=['SELECT'], schema_usage=True)),
                     (('s', 'b'), dict(privileges=[], schema_usage=True)),
                     (('t', 'z'), dict(privileges=['SELECT', 'REFERENCES'], schema_usage=True)))
    assert [render(s) for s in plan_privileges('sync', wanted, current)] == [
        'GRANT SELECT ON TABLE "s"."b" TO "sync"',
        'REVOKE SELECT ON TABLE "s"."a" FROM "sync"',
        'REVOKE SELECT, REFERENCES ON TABLE "t"."z" FROM "sync"',
    ]


def test_upgrade_and_downgrade_between_read_and_write():
    current = tables((('s', 'a'), dict(privileges=['SELECT'], schema_usage=True)),
                     (('s', 'b'), dict(privileges=sorted(WRITE_PRIVILEGES), schema_usage=True)))
    wanted = desired_privileges(['s.b'], ['s.a'])
    assert [render(s) for s in plan_privileges('sync', wanted, current)] == [
        'GRANT INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "s"."a" TO "sync"',
        'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "s"."b" FROM "sync"',
    ]


def test_extra_privileges_on_listed_tables_are_revoked():
    current = tables((('s', 'a'), dict(privileges=['SELECT', 'TRIGGER', 'UPDATE'],
                                       schema_usage=True)))
    assert [render(s) for s in plan_privileges('sync', desired_privileges(['s.a'], []), current)] \
        == ['REVOKE UPDATE, TRIGGER ON TABLE "s"."a" FROM "sync"']


def test_empty_lists_revoke_everything():
    current = tables((('s', 'a'), dict(privileges=['SELECT'], schema_usage=True)))
    assert [render(s) for s in plan_privileges('sync', {}, current)] \
        == ['REVOKE SELECT ON TABLE "s"."a" FROM "sync"']


def test_owned_tables_are_left_alone():
    current = tables((('s', 'mine'), dict(owned=True, privileges=sorted(WRITE_PRIVILEGES),
                                          schema_usage=True)))
    assert plan_privileges('sync', {}, current) == []
    assert plan_privileges('sync', desired_privileges(['s.mine'], None), current) == []


def test_unknown_privilege_kinds_are_ignored():
    current = tables((('s', 'a'), dict(privileges=['SELECT', 'FUTURE'], schema_usage=True)))
    assert privilege_changes(desired_privileges(['s.a'], None), current) == ({}, {})


def test_statement_count_does_not_grow_with_tables():
    names = ['s.t%04d' % i for i in range(1000)]
    wanted = desired_privileges(names, None)
    statements = plan_privileges('sync', wanted, {})
    assert len(statements) == 2          # USAGE + one GRANT for 1,000 tables
    assert render(statements[1]).count('"s"."t') == 1000
    granted = dict((k, TableState(privileges=['SELECT'], schema_usage=True)) for k in wanted)
    assert plan_privileges('sync', wanted, granted) == []
    half = desired_privileges(names[:500], names[500:])
    assert len(plan_privileges('sync', half, granted)) == 1


def test_missing_tables_all_named():
    wanted = desired_privileges(['s.a', 'b', 'Odd.Name'], None)
    current = tables((('s', 'a'), dict()), (('public', 'b'), dict(exists=False)))
    assert missing_tables(wanted, current) == ['Odd.Name', 'public.b']


def test_granted_tables():
    wanted = desired_privileges(['s.b', 's.a'], ['w.x'])
    assert granted_tables(wanted, {}, managed=True) == {
        'select_tables': ['s.a', 's.b'], 'insert_update_delete_tables': ['w.x']}
    current = tables((('s', 'a'), dict(privileges=['SELECT'])),
                     (('s', 'z'), dict(privileges=['INSERT'])))
    assert granted_tables({}, current, managed=False) == {
        'select_tables': ['s.a'], 'insert_update_delete_tables': []}


# ---- state: absent ----------------------------------------------------------------------------

def test_drop_revokes_then_drops():
    deps = [Dependency('db', 'privileges', 'pg_class', table=('s', 'a')),
            Dependency('db', 'privileges', 'pg_class', table=('s', 'b')),
            Dependency('db', 'privileges', 'pg_namespace', schema='s')]
    assert blockers_message('sync', deps, 'db') is None
    assert [render(s) for s in plan_drop('sync', deps)] == [
        'REVOKE ALL ON TABLE "s"."a", "s"."b" FROM "sync"',
        'REVOKE ALL ON SCHEMA "s" FROM "sync"',
        'DROP ROLE "sync"',
    ]


def test_drop_revokes_privileges_on_login_db_itself():
    deps = [Dependency(None, 'privileges', 'pg_database', database_object='My DB')]
    assert blockers_message('sync', deps, 'My DB') is None
    assert [render(s) for s in plan_drop('sync', deps)] == [
        'REVOKE ALL ON DATABASE "My DB" FROM "sync"', 'DROP ROLE "sync"']


def test_drop_without_privileges():
    assert [render(s) for s in plan_drop('we"ird', [])] == ['DROP ROLE "we""ird"']


def test_blockers_named_with_advice():
    deps = [Dependency('db', 'owner', 'pg_class', table=('s', 'mine')),
            Dependency('other', 'privileges', 'pg_class'),
            Dependency('other', 'privileges', 'pg_class'),
            Dependency(None, 'privileges', 'pg_database'),
            Dependency('db', 'privileges', 'pg_proc')]
    msg = blockers_message('sync', deps, 'db')
    assert 'db (owner: 1 object, privileges: 1 object)' in msg
    assert 'other (privileges: 2 objects)' in msg
    assert 'the whole cluster' in msg
    assert 'REASSIGN OWNED BY sync' in msg and 'DROP OWNED BY sync' in msg
    assert 'state=absent' in msg


# ---- sequence privileges ----------------------------------------------------------------------

def test_sequences_of_the_tables_get_select_others_lose_theirs():
    sequences = {
        ('sales', 'orders_id_seq'): SequenceState(used=True, schema_usage=True),
        ('sales', 'items_id_seq'): SequenceState(used=True, privileges=['SELECT'], schema_usage=True),
        ('sales', 'old_seq'): SequenceState(privileges=['SELECT', 'UPDATE', 'USAGE'], schema_usage=True),
        ('sales', 'mine_seq'): SequenceState(used=True, owned=True, schema_usage=True),
    }
    assert render_all(plan_sequence_privileges('r', 'select', sequences)) == [
        'GRANT SELECT ON SEQUENCE "sales"."orders_id_seq" TO "r"',
        'REVOKE USAGE, SELECT, UPDATE ON SEQUENCE "sales"."old_seq" FROM "r"',
    ]
    assert granted_sequences('select', sequences) == ['sales.items_id_seq', 'sales.orders_id_seq']


def test_update_mode_adds_update_for_setval():
    sequences = {('sales', 's'): SequenceState(used=True, privileges=['SELECT'], schema_usage=True),
                 ('sales', 't'): SequenceState(used=True, schema_usage=True)}
    assert render_all(plan_sequence_privileges('r', 'update', sequences)) == [
        'GRANT SELECT, UPDATE ON SEQUENCE "sales"."t" TO "r"',
        'GRANT UPDATE ON SEQUENCE "sales"."s" TO "r"',
    ]
    # and back to select: UPDATE revoked, SELECT kept
    held = {('sales', 's'): SequenceState(used=True, privileges=['SELECT', 'UPDATE'],
                                          schema_usage=True)}
    assert render_all(plan_sequence_privileges('r', 'select', held)) == [
        'REVOKE UPDATE ON SEQUENCE "sales"."s" FROM "r"']


def test_sequences_in_schemas_without_usage_get_it_once():
    sequences = {('seqs', 'a'): SequenceState(used=True, schema_usage=False),
                 ('sales', 'b'): SequenceState(used=True, schema_usage=False),
                 ('other', 'c'): SequenceState(privileges=['SELECT'], schema_usage=False)}
    # the table plan already grants USAGE on sales: not repeated; other is not needed
    assert render_all(plan_sequence_privileges('r', 'select', sequences, usage_granted={'sales'})) == [
        'GRANT USAGE ON SCHEMA "seqs" TO "r"',
        'GRANT SELECT ON SEQUENCE "sales"."b", "seqs"."a" TO "r"',
        'REVOKE SELECT ON SEQUENCE "other"."c" FROM "r"',
    ]


def test_sequences_nothing_to_do():
    sequences = {('sales', 's'): SequenceState(used=True, privileges=['SELECT'], schema_usage=True)}
    assert plan_sequence_privileges('r', 'select', sequences) == []
    assert plan_sequence_privileges('r', 'select', {}) == []
    assert sequence_privilege_changes('update', {}) == ({}, {})


@pytest.mark.parametrize('name', HOSTILE)
def test_sequence_names_are_quoted(name):
    sequences = {(name, name): SequenceState(used=True, schema_usage=False)}
    quoted = '"%s"' % name.replace('"', '""')
    assert render_all(plan_sequence_privileges(name, 'select', sequences)) == [
        'GRANT USAGE ON SCHEMA %s TO %s' % (quoted, quoted),
        'GRANT SELECT ON SEQUENCE %s.%s TO %s' % (quoted, quoted, quoted),
    ]


def test_usage_needed_is_what_the_table_plan_grants():
    wanted = {('a', 't'): READ_PRIVILEGES, ('b', 't'): READ_PRIVILEGES}
    tables = {('a', 't'): TableState(schema_usage=True), ('b', 't'): TableState(schema_usage=False)}
    assert usage_needed(wanted, tables) == {'b'}
    assert render_all(plan_privileges('r', wanted, tables))[0] == 'GRANT USAGE ON SCHEMA "b" TO "r"'


# ---- password_verifier: a verifier copied from another server (SCRAM pass-through) ------------

def test_given_verifier_is_sent_as_is_and_compared_as_a_string():
    copied = build_verifier(PASSWORD)
    statements = plan_role(desired(password=None, password_verifier=copied),
                           RoleState(exists=False))
    secret = [p for p in statements[0].params if isinstance(p, Secret)][0]
    assert secret.value == copied and copied not in render(statements[0])
    # the same verifier: nothing to do
    assert plan_role(desired(password=None, password_verifier=copied),
                     existing(password=copied)) == []
    # the same password with another salt is not enough for pass-through: replaced
    other_salt = build_verifier(PASSWORD)
    assert verify_password(PASSWORD, other_salt) and other_salt != copied
    assert [render(s) for s in plan_role(desired(password=None, password_verifier=copied),
                                         existing(password=other_salt))] \
        == ['ALTER ROLE "sync" WITH PASSWORD \'********\'']


def test_given_verifier_validated_and_exclusive_with_password():
    with pytest.raises(SyncRoleError, match='not a SCRAM-SHA-256 verifier'):
        desired(password=None, password_verifier='md5' + '0' * 32)
    with pytest.raises(SyncRoleError, match='mutually exclusive'):
        desired(password_verifier=build_verifier(PASSWORD))


def test_given_verifier_unreadable_or_on_create():
    copied = build_verifier(PASSWORD)
    assert password_update_needed(desired(password=None, password_verifier=copied),
                                  existing(password=None, password_readable=False))
    assert not password_update_needed(
        desired(password=None, password_verifier=copied, update_password='on_create'),
        existing(password=build_verifier('other')))


def test_provider_replication_role_granted_once_never_revoked():
    want = desired(replication=False, replication_role='rds_replication')
    shown = [render(s) for s in plan_role(want, RoleState(exists=False))]
    assert shown == ['CREATE ROLE "sync" WITH LOGIN NOREPLICATION PASSWORD \'********\'',
                     'GRANT "rds_replication" TO "sync"']
    member = existing(replication=False, replication_roles=['rds_replication'])
    assert plan_role(desired(replication=False, update_password='on_create',
                             replication_role='rds_replication'), member) == []
    # unset: an existing membership is left alone
    assert plan_role(desired(replication=False, update_password='on_create'), member) == []
    assert role_after(want, member)['replication_roles'] == ['rds_replication']


@pytest.mark.parametrize('name', ['pg_read_all_data', 'pg_monitor'])
def test_provider_replication_role_cannot_be_a_predefined_role(name):
    with pytest.raises(SyncRoleError, match='reserved by PostgreSQL'):
        desired(replication_role=name)
