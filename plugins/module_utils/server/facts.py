# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a server and the connected login offer (pg_server_facts): the catalog read and the
pure check of the privileges a database-only host's administrator login needs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# One read, parameterised: the login's attributes and memberships, the databases, the asked
# settings and the subscriptions whose name starts with the prefix (pg_subscription is readable
# without superuser except subconninfo, which is not read).
FACTS_QUERY = """
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       r.rolname AS login, r.rolsuper AS superuser, r.rolcreaterole AS createrole,
       r.rolcreatedb AS createdb, r.rolreplication AS replication,
       (SELECT coalesce(pg_catalog.json_agg(g.rolname ORDER BY g.rolname), '[]')
          FROM pg_catalog.pg_roles g
         WHERE g.rolname = ANY(%(roles)s::text[])
           AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')) AS memberships,
       (SELECT coalesce(pg_catalog.json_agg(d.datname ORDER BY d.datname), '[]')
          FROM pg_catalog.pg_database d
         WHERE d.datallowconn AND NOT d.datistemplate) AS databases,
       (SELECT coalesce(pg_catalog.json_object_agg(s.name, s.setting), '{}')
          FROM pg_catalog.pg_settings s WHERE s.name = ANY(%(settings)s::text[])) AS settings,
       (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
                 'database', d.datname, 'subscription', s.subname,
                 'key', d.datname || '/' || s.subname) ORDER BY d.datname, s.subname), '[]')
          FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
         WHERE pg_catalog.left(s.subname, pg_catalog.length(%(prefix)s)) = %(prefix)s) AS subscriptions
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = current_user
"""
FACTS_QUERY_TEXT = ' '.join(FACTS_QUERY.split())

PRIVILEGES = ('createrole', 'createdb', 'create_subscription', 'replication')


def missing_privileges(facts, required, replication_role=None):
    """The privileges of ``required`` (names of PRIVILEGES) that the login of ``facts`` (the
    module's return: superuser, createrole, createdb, replication, memberships, version_num)
    lacks, each as a sentence saying what to grant. Pure; [] when all are there.

    replication: the REPLICATION attribute, or membership of ``replication_role`` (a managed
    service's provider role such as rds_replication) when one is named; a login may give only
    what it has, so it needs the one the replication role will get.
    create_subscription: PostgreSQL 16 or later and membership of pg_create_subscription.
    """
    if facts.get('superuser'):
        return []
    login = facts.get('login')
    memberships = set(facts.get('memberships') or ())
    out = []
    for name in required:
        if name == 'createrole' and not facts.get('createrole'):
            out.append('CREATEROLE (to create the sync login roles): ALTER ROLE %s CREATEROLE' % login)
        elif name == 'createdb' and not facts.get('createdb'):
            out.append('CREATEDB (to create the missing target databases): ALTER ROLE %s CREATEDB, '
                       'or create them beforehand' % login)
        elif name == 'create_subscription':
            if (facts.get('version_num') or 0) < 160000:
                out.append('subscriptions owned by a role without superuser need PostgreSQL 16 or '
                           'later (this server runs %s)' % facts.get('version_num'))
            elif 'pg_create_subscription' not in memberships:
                out.append('membership of pg_create_subscription (to create subscriptions): '
                           'GRANT pg_create_subscription TO %s' % login)
        elif name == 'replication':
            if replication_role:
                if replication_role not in memberships:
                    out.append('membership of %s (the role that gives replication connections '
                               'here): GRANT %s TO %s WITH ADMIN OPTION'
                               % (replication_role, replication_role, login))
            elif not facts.get('replication'):
                out.append('REPLICATION (a login may give only the attributes it has): ALTER ROLE '
                           '%s REPLICATION, or name the provider role that gives it '
                           '(tablesync_replication_provider_role, for example rds_replication)' % login)
    return out
