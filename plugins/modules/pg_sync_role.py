#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_sync_role
short_description: A least-privilege login role for table sync traffic and its table privileges
version_added: 0.1.0
description:
  - Creates, updates or drops a login role for synchronisation traffic (a logical replication
    subscriber connecting to a publisher, a postgres_fdw user mapping, a dblink trigger), and
    manages its table privileges in the database the module connects to (O(login_db)), all in
    one transaction.
  - The password is never sent in clear text - the module computes a SCRAM-SHA-256 verifier
    (random salt, 4096 iterations) and sends only that, so the password appears neither in the
    server log nor in C(pg_stat_activity). A changed password is detected by checking it
    against the stored verifier.
  - With O(select_tables) and/or O(insert_update_delete_tables) the role gets exactly these
    privileges on the tables of O(login_db) - USAGE on their schemas, and every other table
    privilege it holds there revoked. One C(GRANT) or C(REVOKE) statement covers all tables
    that get the same privileges, and the catalog is read in a fixed number of queries whatever
    the number of tables.
  - Superuser is never granted, and existing superusers are refused. An existing role is
    stripped of C(CREATEROLE), C(CREATEDB) and C(BYPASSRLS) and of its membership in superuser
    roles and in C(pg_read_all_data), C(pg_write_all_data), C(pg_read_server_files),
    C(pg_write_server_files) and C(pg_execute_server_program); the diff and RV(queries) show
    what was removed.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
options:
  name:
    description:
      - Name of the role, taken literally (case, spaces and quotes are kept). At most 63 bytes;
        C(public), C(none) and names starting with C(pg_) are reserved by PostgreSQL.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the role and its privileges in O(login_db).
      - V(absent) revokes its privileges on the tables and schemas of O(login_db) and on the
        O(login_db) database itself (such as C(CONNECT)), then drops it. The module fails before changing anything when the role owns objects or holds
        other privileges (in O(login_db) or in other databases) and says what to run first.
    type: str
    choices: [absent, present]
    default: present
  password:
    description:
      - Password of the role. Sent to the server only as a SCRAM-SHA-256 verifier.
      - When unset the password of an existing role is left alone; a new role gets none.
      - Mutually exclusive with O(password_verifier).
    type: str
  password_verifier:
    description:
      - A SCRAM-SHA-256 verifier, as C(pg_authid.rolpassword) holds it
        (C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)), stored as it is.
      - For SCRAM pass-through (PostgreSQL 18 postgres_fdw and dblink), where the role on the
        remote server must have the very same verifier (same salt and iteration count) as the
        local login it stands for; copy it from that server (for example with
        M(tablesync.postgresql.pg_scram_verifiers)). The module never sees a password then.
      - Compared as a string with the stored verifier, so a role whose password was set with
        another salt is updated.
    type: str
  update_password:
    description:
      - V(always) sets the password when it differs from the stored one. Telling needs reading
        C(pg_authid), which only superusers may do; when O(login_user) is not a superuser the
        password cannot be compared, so it is set on every run (a warning says so).
      - V(on_create) sets the password only when the role is created.
    type: str
    choices: [always, on_create]
    default: always
  login:
    description:
      - Whether the role may log in.
    type: bool
    default: true
  replication:
    description:
      - Whether the role has the C(REPLICATION) attribute (needed to stream changes from a
        publisher to a subscription).
    type: bool
    default: false
  connection_limit:
    description:
      - Maximum number of concurrent connections of the role; V(-1) is no limit.
      - When unset, left as it is (a new role has no limit).
    type: int
  select_tables:
    description:
      - Tables (C(schema.table); C(table) alone is in C(public)) of O(login_db) the role may
        read. Names are taken literally; quote a part that contains a dot
        (C('"my.schema".table')).
      - When this or O(insert_update_delete_tables) is given, the role gets exactly these
        privileges in O(login_db) - every other table privilege it holds there is revoked
        (V([]) revokes them all). When neither is given, table privileges are left alone.
      - All listed tables must exist; the module fails naming every missing one.
    type: list
    elements: str
  insert_update_delete_tables:
    description:
      - Tables the role may read and write - C(SELECT), C(INSERT), C(UPDATE), C(DELETE) and
        C(TRUNCATE) (for postgres_fdw and trigger targets). A table in both lists gets these.
    type: list
    elements: str
  sequences:
    description:
      - Privileges on the sequences the tables of O(select_tables) and
        O(insert_update_delete_tables) use (owned by one of their columns - C(serial) and
        identity columns - or called by a column default), so that the role can read their
        positions (V(select)) or also move them with C(setval()) (V(update)), for example to
        copy sequence positions at a cutover (M(tablesync.postgresql.pg_sequence_sync)).
      - Every other sequence privilege the role holds in O(login_db) is revoked, and USAGE is
        granted on a sequence's schema when needed.
      - When unset, sequence privileges are left alone.
    type: str
    choices: [select, update]
  member_of:
    description:
      - Monitoring roles the role is a member of, exactly (missing ones granted, others of this
        list revoked), for example the exporter of the C(sync_monitoring) role. Only roles that
        read statistics and settings, never table data, may be named. When unset, these
        memberships are left alone.
    type: list
    elements: str
    choices: [pg_monitor, pg_read_all_settings, pg_read_all_stats, pg_stat_scan_tables]
  replication_role:
    description:
      - A role whose membership gives replication connections where the C(REPLICATION)
        attribute cannot be granted (a managed service's provider role, for example
        C(rds_replication) on Amazon RDS and Aurora). Granted when the role is not a member;
        never revoked. Use it with O(replication=false).
      - Predefined roles (C(pg_*), data access or monitoring) cannot be named here.
    type: str
  login_user:
    description:
      - Role to connect as. Defaults to C(PGUSER) from the environment, else C(postgres).
      - Unlike the other modules of the collection, this one has no C(login) alias for it -
        O(login) is the role's LOGIN attribute.
    type: str
    aliases: []
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(queries), RV(role) and the diff show what would be.
  diff_mode:
    support: full
    description: Shows the role's attributes and table lists before and after, and whether its
      password is (or will be) changed - never the password itself.
notes:
  - Tables the role owns are left alone (an owner holds every privilege anyway).
  - Privileges the role has through PUBLIC or through membership in other roles are not
    revoked; only privileges granted to the role itself are managed.
  - A password stored as MD5 is replaced by a SCRAM-SHA-256 verifier of the same password.
seealso:
  - module: tablesync.postgresql.pg_publication
  - module: tablesync.postgresql.pg_subscription
  - name: Password authentication
    description: SCRAM-SHA-256 in PostgreSQL.
    link: https://www.postgresql.org/docs/current/auth-password.html
'''

EXAMPLES = r'''
- name: Replication role on the publisher, allowed to read the published tables
  tablesync.postgresql.pg_sync_role:
    login_db: shop
    name: tablesync_orders
    password: "{{ vault_tablesync_password }}"
    replication: true
    select_tables:
      - sales.orders
      - sales.customers
    sequences: select  # read the positions of their sequences (pg_sequence_sync)

- name: Role that writes into the target tables of a trigger sync
  tablesync.postgresql.pg_sync_role:
    login_db: shop_replica
    name: tablesync_push
    password: "{{ vault_push_password }}"
    connection_limit: 5
    insert_update_delete_tables:
      - sales.orders
    sequences: update  # setval() on sales.orders_id_seq at a cutover

- name: Keep a password that is managed elsewhere
  tablesync.postgresql.pg_sync_role:
    login_db: shop
    name: tablesync_orders
    password: "{{ initial_password }}"
    update_password: on_create
    replication: true
    select_tables: [sales.orders]

- name: Remove the role
  tablesync.postgresql.pg_sync_role:
    login_db: shop
    name: tablesync_orders
    state: absent
'''

RETURN = r'''
role:
  description: The role after the task (predicted in check mode), without any password
    material. The table lists are those of O(login_db).
  returned: success
  type: dict
  contains:
    name:
      description: Role name.
      type: str
      returned: always
    exists:
      description: Whether the role exists.
      type: bool
      returned: always
    superuser:
      description: Always false.
      type: bool
      returned: when the role exists
    login:
      description: LOGIN attribute.
      type: bool
      returned: when the role exists
    replication:
      description: REPLICATION attribute.
      type: bool
      returned: when the role exists
    connection_limit:
      description: Connection limit, -1 for none.
      type: int
      returned: when the role exists
    replication_roles:
      description: The O(replication_role) the role is a member of (an empty list when none).
      type: list
      elements: str
      returned: when the role exists
    member_of:
      description: Monitoring roles (O(member_of)) the role is a member of.
      type: list
      elements: str
      returned: when the role exists
    removed_powers:
      description: Attributes the task removed from an existing role (C(createrole),
        C(createdb), C(bypassrls)).
      type: list
      elements: str
      returned: when the role exists
    removed_memberships:
      description: Memberships the task revoked from an existing role (superuser roles and the
        predefined roles that read or write all data or server files or run programs).
      type: list
      elements: str
      returned: when the role exists
    database:
      description: The database whose tables are listed (O(login_db)).
      type: str
      returned: when the role exists
    select_tables:
      description: Tables the role may read (and not write), sorted.
      type: list
      elements: str
      returned: when the role exists
    insert_update_delete_tables:
      description: Tables the role may read and write, sorted.
      type: list
      elements: str
      returned: when the role exists
    sequences:
      description: The sequences the tables use, on which the role has the O(sequences) privileges, sorted.
      type: list
      elements: str
      returned: when O(sequences) is set and the role exists
  sample:
    name: tablesync_orders
    exists: true
    superuser: false
    login: true
    replication: true
    connection_limit: -1
    database: shop
    select_tables: [sales.customers, sales.orders]
    insert_update_delete_tables: []
queries:
  description: Statements run (in check mode, that would run); the password verifier is shown
    as C(********).
  returned: success
  type: list
  elements: str
  sample:
    - CREATE ROLE "tablesync_orders" WITH LOGIN REPLICATION PASSWORD '********'
    - GRANT USAGE ON SCHEMA "sales" TO "tablesync_orders"
    - GRANT SELECT ON TABLE "sales"."customers", "sales"."orders" TO "tablesync_orders"
diff:
  description: The role before and after, with C(password) as C(set), C(not set), C(unknown)
    (not readable) or C(changed).
  returned: success
  type: dict
  contains:
    before:
      description: State before the task.
      type: dict
      returned: success
    after:
      description: State after the task (predicted in check mode).
      type: dict
      returned: success
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, error_text)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.sync_role import (
    DANGEROUS_MEMBERSHIPS, DEPENDENCY_KINDS, MONITORING_ROLES, Dependency, DesiredRole,
    RoleState, SequenceState, SyncRoleError, TableState, blockers_message, desired_privileges, granted_sequences,
    granted_tables, held_sequences, missing_tables, password_state, password_update_needed,
    plan_drop, plan_privileges, plan_role, plan_sequence_privileges, refuse_superuser,
    role_after, role_before, usage_needed)

try:
    import psycopg2
    import psycopg2.errors  # noqa: F401 pylint: disable=unused-import
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None

TABLE_KINDS = "('r', 'p', 'v', 'm', 'f')"
TABLE_AND_SEQUENCE_KINDS = "('r', 'p', 'v', 'm', 'f', 'S')"

ROLE_QUERY = '''
SELECT r.oid, r.rolsuper, r.rolcanlogin, r.rolreplication, r.rolconnlimit, r.rolpassword,
       ARRAY(SELECT p.name FROM (VALUES ('createrole', r.rolcreaterole),
                                        ('createdb', r.rolcreatedb),
                                        ('bypassrls', r.rolbypassrls)) AS p(name, held)
              WHERE p.held) AS powers,
       ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members AS m
               JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
              WHERE m.member = r.oid
                AND (g.rolsuper OR g.rolname = ANY (%(dangerous)s))) AS memberships,
       ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members AS m
               JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
              WHERE m.member = r.oid AND g.rolname = ANY (%(monitoring)s)) AS monitoring,
       ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members AS m
               JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
              WHERE m.member = r.oid AND g.rolname = %(replication_role)s) AS replication_roles
FROM {catalog} r WHERE r.rolname = %(name)s
'''

# The relations of the given kinds the role holds privileges on (granted to it directly).
HELD_CTE = '''held AS (
    SELECT c.oid AS reloid,
           array_agg(DISTINCT a.privilege_type ORDER BY a.privilege_type) AS privileges
    FROM pg_catalog.pg_class c
    CROSS JOIN grantee g
    CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
    WHERE a.grantee = g.oid AND c.relkind IN {kinds}
    GROUP BY c.oid
)'''

# The wanted tables (existence) and every table the role holds a privilege on, with the
# privileges granted to the role itself and whether it may use the table's schema.
TABLES_QUERY = '''
WITH grantee AS (
    SELECT (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(name)s) AS oid
), wanted AS (
    SELECT w.nspname, w.relname, c.oid AS reloid
    FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(nspname, relname)
    LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.nspname
    LEFT JOIN pg_catalog.pg_class c
           ON c.relnamespace = n.oid AND c.relname = w.relname AND c.relkind IN {kinds}
), {held}
SELECT coalesce(w.nspname, n.nspname) AS schema, coalesce(w.relname, c.relname) AS name,
       c.oid IS NOT NULL AS exists, coalesce(c.relowner = g.oid, false) AS owned,
       coalesce(h.privileges, '{{}}'::text[]) AS privileges,
       pg_catalog.has_schema_privilege(g.oid, n.oid, 'USAGE') AS schema_usage
FROM wanted w
FULL JOIN held h ON h.reloid = w.reloid
LEFT JOIN pg_catalog.pg_class c ON c.oid = coalesce(w.reloid, h.reloid)
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN grantee g
'''

# The sequences the wanted tables use (owned by a column, identity, or called by a column
# default) and every sequence the role holds a privilege on.
SEQUENCES_QUERY = '''
WITH grantee AS (
    SELECT (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(name)s) AS oid
), tabs AS (
    SELECT c.oid
    FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(nspname, relname)
    JOIN pg_catalog.pg_namespace n ON n.nspname = w.nspname
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
), used AS (
    SELECT d.objid AS seqoid
    FROM tabs t
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid = t.oid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.deptype IN ('a', 'i')
    UNION
    SELECT d.refobjid
    FROM tabs t
    JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = t.oid
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
     AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.deptype = 'n'
), {held}
SELECT n.nspname AS schema, c.relname AS name,
       c.oid IN (SELECT seqoid FROM used) AS used,
       coalesce(c.relowner = g.oid, false) AS owned,
       coalesce(h.privileges, '{{}}'::text[]) AS privileges,
       coalesce(pg_catalog.has_schema_privilege(g.oid, n.oid, 'USAGE'), false) AS schema_usage
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN held h ON h.reloid = c.oid
CROSS JOIN grantee g
WHERE c.relkind = 'S' AND (c.oid IN (SELECT seqoid FROM used) OR h.reloid IS NOT NULL)
'''

# Everything that would keep DROP ROLE from succeeding, in every database (privileges on
# sequences are revoked like those on tables).
DEPENDENCIES_QUERY = '''
SELECT d.datname AS database, sd.deptype, sd.classid::regclass::text AS catalog,
       tn.nspname AS table_schema, c.relname AS table_name, sn.nspname AS schema,
       dbo.datname AS database_object
FROM pg_catalog.pg_shdepend sd
CROSS JOIN (SELECT oid FROM pg_catalog.pg_database
            WHERE datname = pg_catalog.current_database()) here
LEFT JOIN pg_catalog.pg_database d ON d.oid = sd.dbid
LEFT JOIN pg_catalog.pg_class c
       ON sd.dbid = here.oid AND sd.classid = 'pg_catalog.pg_class'::regclass
          AND c.oid = sd.objid AND c.relkind IN {kinds}
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_namespace sn
       ON sd.dbid = here.oid AND sd.classid = 'pg_catalog.pg_namespace'::regclass
          AND sn.oid = sd.objid
LEFT JOIN pg_catalog.pg_database dbo
       ON sd.dbid = 0 AND sd.classid = 'pg_catalog.pg_database'::regclass
          AND sd.objid = here.oid AND dbo.oid = here.oid
WHERE sd.refclassid = 'pg_catalog.pg_authid'::regclass AND sd.refobjid = %(oid)s
'''


def _rows(cur):
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, row)) for row in cur.fetchall()]


class SyncRoleCatalog(object):
    """The role and its privileges as the catalog has them; each read is one parameterised
    query, whatever the number of tables."""

    def __init__(self, conn, name, replication_role=None):
        self.conn = conn
        self.name = name
        self.replication_role = replication_role
        self.database = conn.info.dbname

    def _query(self, query, params):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return _rows(cur)

    @staticmethod
    def _role_query(catalog):
        return sql.SQL(ROLE_QUERY).format(catalog=sql.Identifier('pg_catalog', catalog))

    def read_role(self):
        """RoleState; the stored password only when login_user may read pg_authid."""
        readable = True
        params = {'name': self.name, 'dangerous': list(DANGEROUS_MEMBERSHIPS),
                  'monitoring': list(MONITORING_ROLES), 'replication_role': self.replication_role}
        try:
            rows = self._query(self._role_query('pg_authid'), params)
        except psycopg2.errors.InsufficientPrivilege:
            self.conn.rollback()
            readable = False
            rows = self._query(self._role_query('pg_roles'), params)
        if not rows:
            return RoleState(exists=False, password_readable=readable)
        row = rows[0]
        return RoleState(exists=True, oid=row['oid'], superuser=row['rolsuper'],
                         login=row['rolcanlogin'], replication=row['rolreplication'],
                         connection_limit=row['rolconnlimit'],
                         password=row['rolpassword'] if readable else None,
                         password_readable=readable, powers=row['powers'],
                         memberships=row['memberships'], monitoring=row['monitoring'],
                         replication_roles=row['replication_roles'])

    def _by_key(self, query, kinds, wanted, state, fields):
        """One query (``query`` with the held-privileges CTE for relations of ``kinds``) about
        the wanted tables: (schema, name) -> ``state`` built from the row's ``fields``."""
        keys = sorted(wanted)
        held = sql.SQL(HELD_CTE).format(kinds=sql.SQL(kinds))
        rows = self._query(sql.SQL(query).format(kinds=sql.SQL(kinds), held=held),
                           {'name': self.name, 'schemas': [k[0] for k in keys],
                            'tables': [k[1] for k in keys]})
        return dict(((row['schema'], row['name']), state(**dict((f, row[f]) for f in fields)))
                    for row in rows)

    def read_tables(self, wanted):
        """(schema, table) -> TableState for the wanted tables and the tables the role holds
        privileges on, in login_db."""
        return self._by_key(TABLES_QUERY, TABLE_KINDS, wanted, TableState,
                            ('exists', 'owned', 'privileges', 'schema_usage'))

    def read_sequences(self, wanted):
        """(schema, sequence) -> SequenceState for the sequences the wanted tables use and
        those the role holds privileges on, in login_db."""
        return self._by_key(SEQUENCES_QUERY, "('S')", wanted, SequenceState,
                            ('used', 'owned', 'privileges', 'schema_usage'))

    def read_dependencies(self, oid):
        rows = self._query(sql.SQL(DEPENDENCIES_QUERY).format(kinds=sql.SQL(TABLE_AND_SEQUENCE_KINDS)),
                           {'oid': oid})
        return [self._dependency(row) for row in rows]

    @staticmethod
    def _dependency(row):
        table = (row['table_schema'], row['table_name']) if row['table_name'] is not None \
            else None
        return Dependency(row['database'], DEPENDENCY_KINDS.get(row['deptype'], row['deptype']),
                          row['catalog'], table=table, schema=row['schema'],
                          database_object=row['database_object'])


def run(module, executor, statements):
    apply(module, executor, statements, 'Could not apply the changes (nothing was changed): %s')


def ensure_present(module, catalog, executor, desired, current, wanted, managed):
    try:
        refuse_superuser(desired, current)
    except SyncRoleError as e:
        module.fail_json(msg=str(e))
    tables = catalog.read_tables(wanted)
    missing = missing_tables(wanted, tables)
    if missing:
        module.fail_json(msg='Table%s not found in database %s: %s.'
                         % ('s' if len(missing) > 1 else '', catalog.database, ', '.join(missing)),
                         missing_tables=missing)
    if (desired.password or desired.password_verifier) and current.exists \
            and not current.password_readable \
            and desired.update_password == 'always':
        module.warn('login_user cannot read pg_authid (needs superuser), so the password of %s '
                    'cannot be compared and is set on every run; use update_password=on_create '
                    'to set it only when the role is created.' % desired.name)
    password_changes = password_update_needed(desired, current)
    statements = plan_role(desired, current)
    if current.memberships:  # schema USAGE may have come from a membership being revoked
        for table in tables.values():
            table.schema_usage = False
    if managed:
        statements += plan_privileges(desired.name, wanted, tables)
    mode = module.params['sequences']
    sequences = catalog.read_sequences(wanted) if mode else {}
    if mode:
        statements += plan_sequence_privileges(desired.name, mode, sequences,
                                               usage_needed(wanted, tables) if managed else ())
    run(module, executor, statements)

    before = role_before(desired.name, current)
    after = role_after(desired, current)
    if current.exists:
        before.update(granted_tables({}, tables, managed=False), database=catalog.database)
    after.update(granted_tables(wanted, tables, managed), database=catalog.database)
    if mode:
        if current.exists:
            before['sequences'] = held_sequences(sequences)
        after['sequences'] = granted_sequences(mode, sequences)
    before['password'] = password_state(current)
    if password_changes:
        after['password'] = 'changed' if current.exists else 'set'
    else:
        after['password'] = before['password']
    return before, after


def ensure_absent(module, catalog, executor, desired, current):
    name = desired.name
    if not current.exists:
        return dict(name=name, exists=False), dict(name=name, exists=False)
    try:
        refuse_superuser(desired, current)
    except SyncRoleError as e:
        module.fail_json(msg=str(e))
    dependencies = catalog.read_dependencies(current.oid)
    blocked = blockers_message(name, dependencies, catalog.database)
    if blocked:
        module.fail_json(msg=blocked)
    run(module, executor, plan_drop(name, dependencies))
    return role_before(name, current), dict(name=name, exists=False)


def argument_spec():
    spec = connection_argument_spec()
    # 'login' is the role attribute here, not the alias of login_user
    spec['login_user'] = dict((k, v) for k, v in spec['login_user'].items() if k != 'aliases')
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['absent', 'present']),
        password=dict(type='str', no_log=True),
        password_verifier=dict(type='str', no_log=True),
        update_password=dict(type='str', default='always', choices=['always', 'on_create'],
                             no_log=False),
        login=dict(type='bool', default=True),
        replication=dict(type='bool', default=False),
        connection_limit=dict(type='int'),
        select_tables=dict(type='list', elements='str'),
        insert_update_delete_tables=dict(type='list', elements='str'),
        sequences=dict(type='str', choices=['select', 'update']),
        member_of=dict(type='list', elements='str', choices=list(MONITORING_ROLES)),
        replication_role=dict(type='str'),
    )
    return spec


def desired_from_params(module):
    params = module.params
    if params['password'] == '':
        module.fail_json(msg='password must not be empty; leave it unset for a role without '
                             'a password.')
    try:
        desired = DesiredRole(params['name'], login=params['login'],
                              replication=params['replication'],
                              connection_limit=params['connection_limit'],
                              password=params['password'],
                              update_password=params['update_password'],
                              member_of=params['member_of'],
                              password_verifier=params['password_verifier'],
                              replication_role=params['replication_role'])
        wanted = desired_privileges(params['select_tables'],
                                    params['insert_update_delete_tables'])
    except SyncRoleError as e:
        module.fail_json(msg=str(e))
    managed = params['select_tables'] is not None \
        or params['insert_update_delete_tables'] is not None
    return desired, wanted, managed


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('password', 'password_verifier')])
    desired, wanted, managed = desired_from_params(module)
    conn = connect(module)
    executor = Executor(conn, module.check_mode)
    executor.add_secrets(desired.password, desired.password_verifier)
    try:
        catalog = SyncRoleCatalog(conn, desired.name, desired.replication_role)
        current = catalog.read_role()
        if module.params['state'] == 'absent':
            before, after = ensure_absent(module, catalog, executor, desired, current)
        else:
            before, after = ensure_present(module, catalog, executor, desired, current, wanted,
                                           managed)
    except psycopg2.Error as e:  # catalog reads; statements fail through the executor
        module.fail_json(msg='Cannot read the catalog (nothing was changed): %s'
                         % executor.redact(error_text(e, module.params, ())))
    finally:
        executor.rollback()
        conn.close()
    role = dict((k, v) for k, v in after.items() if k != 'password')
    module.exit_json(changed=executor.changed, role=role, queries=executor.queries,
                     diff=dict(before=before, after=after))


if __name__ == '__main__':
    main()
