# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every name the collection derives from a sync set's name, defined once.

The sync model (filter ``sync_plan``) puts them into each host's plan, so the roles never
spell a prefix themselves; the modules use these functions for the objects they create.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError

PREFIX = 'tablesync_'
# tablesync_ + name + _ + 8 hex (slot names, dblink connections) and tablesync_ + name +
# _truncate (trigger names) must fit PostgreSQL's 63-byte identifiers.
SET_NAME_MAX = 63 - len(PREFIX) - 9
SET_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')


def check_set_name(name):
    """The name, or PlanError: it becomes part of object and connection names."""
    if not SET_NAME_RE.match(name or '') or len(name) > SET_NAME_MAX:
        raise PlanError('name %r is not a valid sync set name: lower-case letters, digits and '
                        'underscores, starting with a letter, at most %d characters (it becomes '
                        'part of trigger and connection names)' % (name, SET_NAME_MAX))
    return name


def publication_name(set_name):
    return PREFIX + set_name


# Schema following (pg_schema_follow): the schema of the queues, each set's queue table and
# the publication that carries it in the set's subscription.
DDL_SCHEMA = PREFIX + 'ddl'


def ddl_queue_name(set_name):
    """The set's queue table, as a ``schema.table`` entry of a tables list."""
    return '%s.%s' % (DDL_SCHEMA, set_name)


def ddl_publication_name(set_name):
    return PREFIX + set_name + '_ddl'


def subscription_name(set_name):
    return PREFIX + set_name


def _endpoint_digest(host, database):
    return hashlib.sha1(('%s/%s' % (host, database)).encode('utf-8')).hexdigest()[:8]


def slot_name(set_name, host, database):
    """One slot per set and target database, unique on the publisher."""
    return '%s%s_%s' % (PREFIX, set_name, _endpoint_digest(host, database))


def standby_slot_name(host):
    """The physical slot of a publisher's standby (``tablesync_standby_of``) on that publisher."""
    return '%sstandby_%s' % (PREFIX, hashlib.sha1(host.encode('utf-8')).hexdigest()[:8])


def peer_subscription_name(set_name, host, database):
    """A bidirectional set's subscription to a peer other than the set's source (the one to
    the source keeps ``subscription_name``): one per publishing peer, unique in the database."""
    return '%s%s_%s' % (PREFIX, set_name, _endpoint_digest(host, database))


def server_name(set_name):
    """The foreign server of an fdw set on its consumer, and of a trigger set on its source."""
    return PREFIX + set_name


def row_trigger_name(set_name):
    return PREFIX + set_name


def truncate_trigger_name(set_name):
    return '%s%s_truncate' % (PREFIX, set_name)


def flush_unit(set_name):
    """The systemd service (and timer) that flushes a queued trigger set on its source."""
    return 'tablesync-trigger-flush-%s' % set_name


def refresh_unit(set_name):
    """The systemd service (and timer) that refreshes an fdw set's local copies."""
    return 'tablesync-fdw-refresh-%s' % set_name
