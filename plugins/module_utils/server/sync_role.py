# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync role and its table privileges: desired vs current -> statements (pure, no I/O).

One GRANT (or REVOKE) statement per distinct privilege set, naming all its tables at once, so
the number of statements does not grow with the number of tables.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier, format_qualified, parse_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import (
    build_verifier, is_verifier, verify_password)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# Table privileges in the order GRANT lists them; anything else in an ACL is left alone.
TABLE_PRIVILEGES = ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER',
                    'MAINTAIN')
READ_PRIVILEGES = frozenset(['SELECT'])
WRITE_PRIVILEGES = frozenset(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])
RESERVED_ROLE_NAMES = ('public', 'none')


class SyncRoleError(TablesyncError):
    pass


# ---- names ------------------------------------------------------------------------------------

def check_role_name(name):
    """The role name, taken literally; raises SyncRoleError for names PostgreSQL refuses."""
    try:
        check_identifier(name, 'role name')
    except NameError_ as e:
        raise SyncRoleError(str(e))
    if name in RESERVED_ROLE_NAMES or name.startswith('pg_'):
        raise SyncRoleError('role name %r is reserved by PostgreSQL' % name)
    return name


def desired_privileges(select_tables, insert_update_delete_tables):
    """(schema, table) -> privilege set. A table in both lists gets the write privileges.
    Raises SyncRoleError naming every malformed table name."""
    wanted, problems = {}, []
    for names, privileges in ((select_tables, READ_PRIVILEGES),
                              (insert_update_delete_tables, WRITE_PRIVILEGES)):
        for name in names or ():
            try:
                key = parse_qualified(name)
            except NameError_ as e:
                problems.append(str(e))
                continue
            wanted[key] = wanted.get(key, frozenset()) | privileges
    if problems:
        raise SyncRoleError('Invalid table names: %s.' % '; '.join(problems))
    return wanted


# ---- current state ------------------------------------------------------------------------------

class RoleState(object):
    """The role as pg_authid has it. ``password``: the stored verifier, None when the role has
    none; ``password_readable``: False when login_user may not read pg_authid."""

    def __init__(self, exists=False, superuser=False, login=False, replication=False,
                 connection_limit=-1, password=None, password_readable=True, oid=None,
                 powers=(), memberships=(), monitoring=(), replication_roles=()):
        self.exists = exists
        self.replication_roles = sorted(replication_roles)
        self.monitoring = sorted(monitoring)
        self.powers = [p for p in POWERS if p in powers]
        self.memberships = sorted(memberships)
        self.superuser = superuser
        self.login = login
        self.replication = replication
        self.connection_limit = connection_limit
        self.password = password
        self.password_readable = password_readable
        self.oid = oid


class TableState(object):
    """A table the role should have privileges on or has privileges on."""

    __slots__ = ('exists', 'owned', 'privileges', 'schema_usage')

    def __init__(self, exists=True, owned=False, privileges=(), schema_usage=None):
        self.exists = exists
        self.owned = owned
        self.privileges = frozenset(privileges)
        self.schema_usage = schema_usage


class DesiredRole(object):
    """What the task asks for. ``connection_limit`` None: not managed."""

    def __init__(self, name, login=True, replication=False, connection_limit=None,
                 password=None, update_password='always', member_of=None,
                 password_verifier=None, replication_role=None):
        self.name = check_role_name(name)
        if replication_role is not None:
            # predefined roles (pg_*: data access, monitoring) are refused as reserved names
            check_role_name(replication_role)
        # a managed service's role that gives replication connections (rds_replication):
        # granted when missing, never revoked
        self.replication_role = replication_role
        if password is not None and password_verifier is not None:
            raise SyncRoleError('password and password_verifier are mutually exclusive')
        if password_verifier is not None and not is_verifier(password_verifier):
            raise SyncRoleError('password_verifier of %s is not a SCRAM-SHA-256 verifier '
                                '(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, '
                                'as pg_authid.rolpassword has it)' % self.name)
        if member_of is not None:
            bad = sorted(set(member_of) - set(MONITORING_ROLES))
            if bad:
                raise SyncRoleError('member_of may name only %s, not %s'
                                    % (', '.join(MONITORING_ROLES), ', '.join(bad)))
        self.member_of = None if member_of is None else sorted(set(member_of))
        self.login = login
        self.replication = replication
        self.connection_limit = connection_limit
        self.password = password
        self.password_verifier = password_verifier
        self.update_password = update_password


# ---- role ---------------------------------------------------------------------------------------

# Attributes a sync role never keeps (an existing role is stripped of them), as pg_roles names
# them and as ALTER ROLE removes them.
POWERS = ('createrole', 'createdb', 'bypassrls')
NO_POWER = {'createrole': 'NOCREATEROLE', 'createdb': 'NOCREATEDB', 'bypassrls': 'NOBYPASSRLS'}
# Predefined roles whose membership gives far more than the synced tables; membership in any
# superuser role is revoked as well (SET ROLE would make the sync role a superuser).
DANGEROUS_MEMBERSHIPS = ('pg_read_all_data', 'pg_write_all_data', 'pg_read_server_files',
                         'pg_write_server_files', 'pg_execute_server_program')
# The only roles ``member_of`` may name: monitoring without access to table data.
MONITORING_ROLES = ('pg_monitor', 'pg_read_all_settings', 'pg_read_all_stats',
                    'pg_stat_scan_tables')


def refuse_superuser(desired, current):
    if current.superuser:
        raise SyncRoleError('Role %s is a superuser; this module manages least-privilege sync '
                            'roles only and never changes or drops a superuser. Choose another '
                            'name.' % desired.name)


def password_update_needed(desired, current):
    """Whether to send a new verifier: the role is new, or the stored verifier does not match
    the password (not readable: always, unless update_password is on_create). A given
    ``password_verifier`` is compared as it is: the same verifier, not merely the same password
    (SCRAM pass-through needs the same salt and iteration count on both servers)."""
    if desired.password is None and desired.password_verifier is None:
        return False
    if not current.exists:
        return True
    if desired.update_password == 'on_create':
        return False
    if not current.password_readable:
        return True
    if desired.password_verifier is not None:
        return desired.password_verifier != current.password
    return not verify_password(desired.password, current.password)


def _attribute_options(desired, current):
    """(SQL fragments, params) for the attributes that differ (all of them on CREATE)."""
    fragments, params = [], []
    if not current.exists or desired.login != current.login:
        fragments.append(sql.SQL('LOGIN' if desired.login else 'NOLOGIN'))
    if not current.exists or desired.replication != current.replication:
        fragments.append(sql.SQL('REPLICATION' if desired.replication else 'NOREPLICATION'))
    if desired.connection_limit is not None \
            and desired.connection_limit != (current.connection_limit if current.exists else -1):
        fragments.append(sql.SQL('CONNECTION LIMIT %s'))
        params.append(desired.connection_limit)
    if current.exists:
        fragments.extend(sql.SQL(NO_POWER[p]) for p in current.powers)
    return fragments, params


def revoke_memberships(desired, current):
    """REVOKE of the memberships a sync role must not have (see DANGEROUS_MEMBERSHIPS), and
    GRANT/REVOKE of the monitoring roles of ``member_of`` (when given)."""
    held = current.monitoring if current.exists else []
    statements = [Statement(sql.SQL('REVOKE {} FROM {}').format(
        sql.Identifier(role), sql.Identifier(desired.name)))
        for role in (current.memberships if current.exists else [])]
    if desired.replication_role is not None and desired.replication_role not in (
            current.replication_roles if current.exists else []):
        statements.append(Statement(sql.SQL('GRANT {} TO {}').format(
            sql.Identifier(desired.replication_role), sql.Identifier(desired.name))))
    if desired.member_of is not None:
        statements += [Statement(sql.SQL('GRANT {} TO {}').format(
            sql.Identifier(role), sql.Identifier(desired.name)))
            for role in desired.member_of if role not in held]
        statements += [Statement(sql.SQL('REVOKE {} FROM {}').format(
            sql.Identifier(role), sql.Identifier(desired.name)))
            for role in held if role not in desired.member_of]
    return statements


def plan_role(desired, current, verifier=None):
    """CREATE ROLE or ALTER ROLE (only what differs); [] when nothing does.

    ``verifier``: the SCRAM verifier to send (made with build_verifier() when needed)."""
    refuse_superuser(desired, current)
    fragments, params = _attribute_options(desired, current)
    if password_update_needed(desired, current):
        verifier = desired.password_verifier or verifier or build_verifier(desired.password)
        fragments.append(sql.SQL('PASSWORD %s'))
        params.append(Secret(verifier, sensitive=[desired.password] if desired.password else []))
    revokes = revoke_memberships(desired, current)
    if current.exists and not fragments:
        return revokes
    command = 'ALTER ROLE {} WITH ' if current.exists else 'CREATE ROLE {} WITH '
    query = sql.SQL(command).format(sql.Identifier(desired.name)) + sql.SQL(' ').join(fragments)
    return [Statement(query, params)] + revokes


def role_after(desired, current):
    """The role's attributes once the plan ran (for diff and the return value)."""
    return dict(
        name=desired.name,
        exists=True,
        superuser=False,
        login=desired.login,
        replication=desired.replication,
        connection_limit=desired.connection_limit if desired.connection_limit is not None
        else (current.connection_limit if current.exists else -1),
        removed_powers=list(current.powers) if current.exists else [],
        removed_memberships=list(current.memberships) if current.exists else [],
        member_of=desired.member_of if desired.member_of is not None
        else (list(current.monitoring) if current.exists else []),
        replication_roles=sorted(set((list(current.replication_roles) if current.exists else [])
                                     + ([desired.replication_role] if desired.replication_role else []))),
    )


def role_before(name, current):
    if not current.exists:
        return dict(name=name, exists=False)
    return dict(name=name, exists=True, superuser=current.superuser, login=current.login,
                replication=current.replication, connection_limit=current.connection_limit,
                powers=list(current.powers), memberships=list(current.memberships),
                member_of=list(current.monitoring), replication_roles=list(current.replication_roles))


def password_state(current):
    if not current.exists:
        return 'not set'
    if not current.password_readable:
        return 'unknown'
    return 'set' if current.password else 'not set'


# ---- table privileges ---------------------------------------------------------------------------

def missing_tables(wanted, tables):
    """Display names of the wanted tables that do not exist, sorted."""
    return sorted(format_qualified(*key) for key in wanted
                  if not tables.get(key, TableState(exists=False)).exists)


def _ordered(privileges, order=TABLE_PRIVILEGES):
    return [p for p in order if p in privileges]


def _table_list(keys):
    return sql.SQL(', ').join(sql.Identifier(schema, name) for schema, name in sorted(keys))


def _privilege_statement(template, role, privileges, keys, order=TABLE_PRIVILEGES):
    """``template``: 'GRANT {} ON <kind> {} TO {}' or 'REVOKE {} ON <kind> {} FROM {}'."""
    return Statement(sql.SQL(template).format(
        sql.SQL(', ').join(sql.SQL(p) for p in _ordered(privileges, order)),
        _table_list(keys), sql.Identifier(role)))


def grant_tables(role, privileges, keys):
    return _privilege_statement('GRANT {} ON TABLE {} TO {}', role, privileges, keys)


def revoke_tables(role, privileges, keys):
    return _privilege_statement('REVOKE {} ON TABLE {} FROM {}', role, privileges, keys)


def grant_usage(role, schemas):
    return Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(
        sql.SQL(', ').join(sql.Identifier(s) for s in sorted(schemas)), sql.Identifier(role)))


def revoke_schemas(role, schemas):
    return Statement(sql.SQL('REVOKE ALL ON SCHEMA {} FROM {}').format(
        sql.SQL(', ').join(sql.Identifier(s) for s in sorted(schemas)), sql.Identifier(role)))


def _group(changes, order=TABLE_PRIVILEGES):
    """{frozenset(privileges): [keys]} -> statements in a stable order."""
    return sorted(changes.items(), key=lambda item: (_ordered(item[0], order), sorted(item[1])))


def _diff(entries, known):
    """({privileges to grant: [keys]}, {privileges to revoke: [keys]}) from (key, state, want)
    entries; only the ``known`` privileges of a state count, and objects the role owns are
    left alone: an owner holds every privilege anyway."""
    grants, revokes = {}, {}
    for key, state, want in entries:
        if state.owned:
            continue
        have = frozenset(p for p in state.privileges if p in known)
        if want - have:
            grants.setdefault(want - have, []).append(key)
        if have - want:
            revokes.setdefault(have - want, []).append(key)
    return grants, revokes


def privilege_changes(wanted, tables):
    """({privileges to grant: [tables]}, {privileges to revoke: [tables]})."""
    return _diff(((key, tables.get(key, TableState()), wanted.get(key, frozenset()))
                  for key in set(wanted) | set(tables)), TABLE_PRIVILEGES)


def usage_needed(wanted, tables):
    """The schemas of the wanted tables the role may not use yet."""
    return set(key[0] for key in wanted if not tables.get(key, TableState()).schema_usage)


def plan_privileges(role, wanted, tables):
    """USAGE on the schemas of the wanted tables, then one GRANT and one REVOKE per distinct
    privilege set. ``tables``: (schema, table) -> TableState for the wanted tables and every
    table the role holds a privilege on."""
    schemas = usage_needed(wanted, tables)
    grants, revokes = privilege_changes(wanted, tables)
    statements = [grant_usage(role, schemas)] if schemas else []
    statements += [grant_tables(role, privs, keys) for privs, keys in _group(grants)]
    statements += [revoke_tables(role, privs, keys) for privs, keys in _group(revokes)]
    return statements


def granted_tables(wanted, tables, managed):
    """{'select_tables': [...], 'insert_update_delete_tables': [...]} after the run."""
    if managed:
        held = dict(wanted)
    else:
        held = dict((key, t.privileges) for key, t in tables.items() if t.privileges)
    return dict(
        select_tables=sorted(format_qualified(*k) for k, p in held.items()
                             if 'SELECT' in p and not WRITE_PRIVILEGES <= p),
        insert_update_delete_tables=sorted(format_qualified(*k) for k, p in held.items()
                                           if WRITE_PRIVILEGES <= p),
    )


# ---- sequence privileges ------------------------------------------------------------------------

# Sequence privileges in the order GRANT lists them, and what each value of the module's
# ``sequences`` option grants on the sequences the tables use (SELECT reads the position;
# setval() needs UPDATE).
SEQUENCE_PRIVILEGES = ('USAGE', 'SELECT', 'UPDATE')
SEQUENCE_MODES = {'select': frozenset(['SELECT']), 'update': frozenset(['SELECT', 'UPDATE'])}


class SequenceState(object):
    """A sequence the tables use (``used``) or the role holds a privilege on."""

    __slots__ = ('used', 'owned', 'privileges', 'schema_usage')

    def __init__(self, used=False, owned=False, privileges=(), schema_usage=None):
        self.used = used
        self.owned = owned
        self.privileges = frozenset(privileges)
        self.schema_usage = schema_usage


def sequence_privilege_changes(mode, sequences):
    """({privileges to grant: [sequences]}, {privileges to revoke: [sequences]}): ``mode``'s
    privileges on the used sequences, none on the others; sequences the role owns are left
    alone."""
    wanted = SEQUENCE_MODES[mode]
    return _diff(((key, seq, wanted if seq.used else frozenset())
                  for key, seq in sequences.items()), SEQUENCE_PRIVILEGES)


def plan_sequence_privileges(role, mode, sequences, usage_granted=()):
    """USAGE on the schemas of the used sequences the role may not use yet (but those in
    ``usage_granted``, already granted by the table plan), then one GRANT and one REVOKE ...
    ON SEQUENCE per distinct privilege set."""
    schemas = set(key[0] for key, seq in sequences.items()
                  if seq.used and not seq.owned and not seq.schema_usage) - set(usage_granted)
    grants, revokes = sequence_privilege_changes(mode, sequences)
    statements = [grant_usage(role, schemas)] if schemas else []
    order = SEQUENCE_PRIVILEGES
    statements += [_privilege_statement('GRANT {} ON SEQUENCE {} TO {}', role, privs, keys, order)
                   for privs, keys in _group(grants, order)]
    statements += [_privilege_statement('REVOKE {} ON SEQUENCE {} FROM {}', role, privs, keys,
                                        order)
                   for privs, keys in _group(revokes, order)]
    return statements


def held_sequences(sequences):
    """Display names of the sequences the role holds a privilege on (before the run)."""
    return sorted(format_qualified(*key) for key, seq in sequences.items()
                  if seq.privileges and not seq.owned)


def granted_sequences(mode, sequences):
    """Display names of the sequences the role has ``mode``'s privileges on after the run."""
    return sorted(format_qualified(*key) for key, seq in sequences.items()
                  if seq.used and not seq.owned) if mode in SEQUENCE_MODES else []


# ---- state: absent ------------------------------------------------------------------------------

DEPENDENCY_KINDS = {'o': 'owner', 'a': 'privileges', 'r': 'policies',
                    'i': 'initial privileges', 't': 'tablespace'}


class Dependency(object):
    """A pg_shdepend entry of the role: ``kind`` 'owner' or 'privileges' (or another deptype),
    in ``database`` (None: shared objects such as databases). ``revocable`` when it is a
    privilege on a table or schema of login_db (``table`` / ``schema`` say which) or on the
    login_db database itself (``database_object``)."""

    __slots__ = ('database', 'kind', 'catalog', 'table', 'schema', 'database_object')

    def __init__(self, database, kind, catalog, table=None, schema=None, database_object=None):
        self.database = database
        self.kind = kind
        self.catalog = catalog
        self.table = table
        self.schema = schema
        self.database_object = database_object

    @property
    def revocable(self):
        return self.kind == 'privileges' and any(
            x is not None for x in (self.table, self.schema, self.database_object))


def blockers_message(name, dependencies, login_db):
    """None, or why DROP ROLE would fail and what to do."""
    counts = {}
    for dep in dependencies:
        if not dep.revocable:
            where = dep.database or 'the whole cluster (databases, tablespaces)'
            counts.setdefault(where, {}).setdefault(dep.kind, 0)
            counts[where][dep.kind] += 1
    if not counts:
        return None
    parts = []
    for where in sorted(counts):
        kinds = ', '.join('%s: %d object%s' % (kind, n, '' if n == 1 else 's')
                          for kind, n in sorted(counts[where].items()))
        parts.append('%s (%s)' % (where, kinds))
    return ('Role %s cannot be dropped: it owns objects or holds privileges outside the tables '
            'and schemas of %s: %s. Run pg_sync_role with state=absent and login_db set to each '
            'of those databases, or there REASSIGN OWNED BY %s TO <owner>; DROP OWNED BY %s; '
            'then run this task again.' % (name, login_db, '; '.join(parts), name, name))


def plan_drop(name, dependencies):
    """REVOKE the privileges on the tables and schemas of login_db and on login_db itself,
    then DROP ROLE (one transaction)."""
    revocable = [d for d in dependencies if d.revocable]
    tables = set(d.table for d in revocable if d.table is not None)
    schemas = set(d.schema for d in revocable if d.schema is not None)
    databases = set(d.database_object for d in revocable if d.database_object is not None)
    statements = []
    if tables:
        statements.append(Statement(sql.SQL('REVOKE ALL ON TABLE {} FROM {}').format(
            _table_list(tables), sql.Identifier(name))))
    if schemas:
        statements.append(revoke_schemas(name, schemas))
    for database in sorted(databases):
        statements.append(Statement(sql.SQL('REVOKE ALL ON DATABASE {} FROM {}').format(
            sql.Identifier(database), sql.Identifier(name))))
    statements.append(Statement(sql.SQL('DROP ROLE {}').format(sql.Identifier(name))))
    return statements
