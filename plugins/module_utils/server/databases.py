# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync sets' target databases (pg_databases): the catalog read and the pure plan.

Creating only: a database this collection did not create may hold anything, so none is ever
dropped. CREATE DATABASE cannot run inside a transaction block, so each statement runs alone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import check_identifier
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement, sql

DATABASES_QUERY = 'SELECT d.datname FROM pg_catalog.pg_database d WHERE d.datname = ANY(%s::text[])'


def plan_databases(wanted, existing, owner=None):
    """CREATE DATABASE for each name of ``wanted`` not in ``existing`` (in the given order,
    each once), owned by ``owner`` when given (else by the connected login)."""
    statements = []
    seen = set(existing)
    for name in wanted:
        check_identifier(name, 'database name')
        if name in seen:
            continue
        seen.add(name)
        query = sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name))
        if owner:
            query = sql.SQL('{} OWNER {}').format(query, sql.Identifier(owner))
        statements.append(Statement(query, autocommit=True))
    return statements
