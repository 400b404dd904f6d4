#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_server_facts
short_description: Read what a PostgreSQL server and the connected login offer (no superuser, no file)
version_added: 0.1.0
description:
  - Reads, in one query, the server version, the databases that accept connections, the named
    settings, the subscriptions whose name starts with a prefix (in every database,
    since C(pg_subscription) is a shared catalog) and the connected login's attributes and
    memberships. Changes nothing.
  - Needs no superuser and no file on the server, so it serves database-only hosts (managed
    PostgreSQL, docs/managed.md), reached over TCP with an administrator login, where the
    roles cannot run C(psql) as the local C(postgres) user.
  - With O(require), fails naming every privilege the login lacks and the statement that grants
    it, so that a run stops before it creates anything.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.read_only
options:
  settings:
    description:
      - Settings to return (names from C(pg_settings)); unknown names are left out.
    type: list
    elements: str
    default: []
  subscription_prefix:
    description:
      - Return the subscriptions whose name starts with this text (taken literally).
    type: str
    default: tablesync_
  require:
    description:
      - Privileges the login must have (a superuser has them all). V(createrole) and
        V(createdb) are role attributes; V(create_subscription) is PostgreSQL 16 or later and
        membership of C(pg_create_subscription); V(replication) is the C(REPLICATION)
        attribute, or membership of O(replication_role) when that is set.
    type: list
    elements: str
    choices: [createrole, createdb, create_subscription, replication]
    default: []
  replication_role:
    description:
      - The role that gives replication connections where the REPLICATION attribute is not
        granted directly (a managed service's provider role, for example C(rds_replication)).
      - Also returned in RV(memberships) when the login is a member of it.
    type: str
'''

EXAMPLES = r'''
- name: Read a managed server as its administrator login, failing when a privilege is missing
  tablesync.postgresql.pg_server_facts:
    login_host: shop-db.example.net
    login_user: tablesync_admin
    login_password: "{{ vault_tablesync_admin_password }}"
    ssl_mode: require
    settings: [wal_level, max_replication_slots, max_wal_senders]
    require: [createrole, replication]
    replication_role: rds_replication
  register: shop_db
'''

RETURN = r'''
version_num:
  description: C(server_version_num).
  returned: success
  type: int
  sample: 180001
login:
  description: The connected role's attributes.
  returned: success
  type: dict
  sample: {"name": "tablesync_admin", "superuser": false, "createrole": true, "createdb": true, "replication": false}
memberships:
  description: >-
    The roles among C(pg_create_subscription), C(pg_monitor) and O(replication_role)
    the login is a member of (directly or not).
  returned: success
  type: list
  elements: str
databases:
  description: The databases that accept connections, templates left out, sorted.
  returned: success
  type: list
  elements: str
settings:
  description: Setting name -> its value as C(pg_settings.setting) shows it.
  returned: success
  type: dict
  sample: {"wal_level": "logical"}
subscriptions:
  description: The subscriptions named with O(subscription_prefix), in every database.
  returned: success
  type: list
  elements: dict
  sample: [{"database": "shop_rep", "subscription": "tablesync_orders", "key": "shop_rep/tablesync_orders"}]
missing:
  description: >-
    What the login lacks of O(require), each with the statement that grants it
    (also in the failure message).
  returned: always
  type: list
  elements: str
queries:
  description: The catalog read made (no secret is part of it).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.facts import (
    FACTS_QUERY, FACTS_QUERY_TEXT, PRIVILEGES, missing_privileges)

KNOWN_ROLES = ('pg_create_subscription', 'pg_monitor')


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        settings=dict(type='list', elements='str', default=[]),
        subscription_prefix=dict(type='str', default='tablesync_'),
        require=dict(type='list', elements='str', choices=list(PRIVILEGES), default=[]),
        replication_role=dict(type='str'),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    roles = list(KNOWN_ROLES) + ([p['replication_role']] if p['replication_role'] else [])
    conn = connect(module)
    with conn.cursor() as cur:
        cur.execute(FACTS_QUERY, {'roles': roles, 'settings': p['settings'],
                                  'prefix': p['subscription_prefix']})
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
    conn.rollback()
    conn.close()
    facts = dict(zip(names, row))
    result = dict(
        changed=False, version_num=facts['version_num'], databases=facts['databases'],
        settings=facts['settings'], subscriptions=facts['subscriptions'],
        memberships=facts['memberships'], queries=[FACTS_QUERY_TEXT],
        login=dict((k, facts[k]) for k in ('superuser', 'createrole', 'createdb', 'replication')))
    result['login']['name'] = facts['login']
    result['missing'] = missing_privileges(facts, p['require'], p['replication_role'])
    if result['missing']:
        module.fail_json(msg='%s lacks what this run needs: %s' % (
            facts['login'], '; '.join(result['missing'])), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
