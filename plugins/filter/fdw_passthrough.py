# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM pass-through of the fdw sets (PostgreSQL 18), in one pass each (no task per table).

A consumer's pass-through logins read the sets' foreign tables as themselves: on every source
of the consumer's present sets, a role of the same name with the same SCRAM verifier and
``SELECT`` on exactly the tables of the sets it reads there, admitted by ``pg_hba.conf`` from
the consumer's address.

``fdw_source_databases(parts)`` (consumer side) -> one entry per source database of the
present parts: ``{host, port, database, tables, sets}``, the tables of every set read there.

``fdw_passthrough_grants(parts, roles)`` -> the same per source database and login, with
``role``.

``fdw_definitions_index(results)`` -> ``{"host/database": {"schema.table": foreign_table}}``
from the registered loop of pg_table_definitions over ``fdw_source_databases`` (the explicit
foreign tables of sets whose consumer session cannot import through the server).

``fdw_passthrough_hba(publisher_sets, hostvars, var)`` (source side) -> ``pg_hba.conf`` lines
``{database, address, user, comment}`` for the logins each consumer names in its host variable
``var``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import _cidr


def _logins(roles, where):
    if roles is None:
        return []
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise AnsibleFilterError('%s must be a list of role names' % where)
    return roles


def fdw_source_databases(parts):
    grouped = {}
    for part in parts or []:
        if part.get('state', 'present') != 'present':
            continue
        pub = part['publisher']
        key = (pub['host'], pub['database'])
        entry = grouped.setdefault(key, {'port': pub['port'], 'tables': set(), 'sets': set()})
        entry['tables'].update(part['table_names'])
        entry['sets'].add(part['set'])
    return [{'host': host, 'port': entry['port'], 'database': database,
             'tables': sorted(entry['tables']), 'sets': sorted(entry['sets'])}
            for (host, database), entry in sorted(grouped.items())]


def fdw_passthrough_grants(parts, roles):
    roles = _logins(roles, 'the scram pass-through roles')
    return [dict(source, role=role) for source in fdw_source_databases(parts) for role in roles]


def fdw_definitions_index(results):
    index = {}
    for result in (results or {}).get('results', []):
        if result.get('skipped'):
            continue
        source = result['item']
        tables = index.setdefault('%s/%s' % (source['host'], source['database']), {})
        for table in result['tables']:
            tables[table['name']] = table['foreign_table']
    return index


def fdw_passthrough_hba(publisher_sets, hostvars, var):
    lines = {}
    for item in publisher_sets or []:
        if item.get('state') != 'present':
            continue
        for sub in item['subscribers']:
            if not sub.get('address'):
                continue
            roles = _logins((hostvars.get(sub['host']) or {}).get(var),
                            '%s of %s' % (var, sub['host']))
            for role in roles:
                key = (item['database'], _cidr(sub['address']), role)
                lines.setdefault(key, set()).add(item['name'])
    return [{'database': db, 'address': addr, 'user': role,
             'comment': 'fdw scram pass-through: ' + ', '.join(sorted(names))}
            for (db, addr, role), names in sorted(lines.items())]


class FilterModule(object):
    def filters(self):
        return {'fdw_source_databases': fdw_source_databases,
                'fdw_passthrough_grants': fdw_passthrough_grants,
                'fdw_definitions_index': fdw_definitions_index,
                'fdw_passthrough_hba': fdw_passthrough_hba}
