# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What pg_sync_trigger's planner compares: the desired set (``SetSpec``) and the current state
read from the catalog (``Environment``, ``SourceTable``, ``SetState``), as plain objects.

The module's catalog reader fills the state objects; unit tests build them by hand.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.capture import (
    CAPTURE_NAME_RE)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_refs
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import check_set_name, server_name

MODES = ('queued', 'immediate')
TABLE_KEYS = ('name', 'target', 'key_columns', 'columns')
SERVER_OPTION_KEYS = ('host', 'port', 'dbname', 'sslmode', 'sslrootcert', 'connect_timeout',
                      'application_name')
TABLE_KINDS = ('r', 'p')
# pg_trigger.tgtype bits: ROW 1, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32 (AFTER: no bit).
ROW_TRIGGER_TYPE = 1 | 4 | 8 | 16
TRUNCATE_TRIGGER_TYPE = 32
ENABLED_ORIGIN = 'O'
# Role attributes the owner of the sync schema must not have: its routines run as it for
# every writer of a synced table.
OWNER_FORBIDDEN = ('superuser', 'login', 'createrole', 'createdb', 'replication', 'bypassrls')
_VERSION_RE = re.compile(r'^%s v(\d+)$' % re.escape(q.MARKER))
# the first line of every body the collection installs (also there when a dump or restore
# dropped the comments)
_HEADER_RE = re.compile(r'^-- %s v(\d+) ' % re.escape(q.MARKER))


# ---- names ----------------------------------------------------------------------------------

def default_server_name(set_name):
    return server_name(set_name)


# ---- desired state --------------------------------------------------------------------------

def parse_tables(items):
    """The ``tables`` option -> list of TableRef (``core.tables``: name, target, key_columns,
    columns); PlanError naming every bad item."""
    refs, errors = parse_table_refs(items, TABLE_KEYS)
    errors = ['tables: %s' % e for e in errors]
    errors.extend('tables: %s is in schema %s, which holds the sync machinery itself'
                  % (ref.shown, q.SCHEMA) for ref in refs if ref.schema == q.SCHEMA)
    if errors:
        raise PlanError(errors)
    return refs


def server_options_from_target(target, set_name):
    """The foreign server options (strings) of a ``target`` dict; None when it names no host
    or database, i.e. the server is not managed by the module."""
    if not target or all(target.get(k) is None for k in ('host', 'port', 'dbname')):
        return None
    options = {'application_name': server_name(set_name)}
    for key in SERVER_OPTION_KEYS:
        if target.get(key) is not None:
            options[key] = str(target[key])
    return options


class SetSpec(object):
    """What the task asks for."""

    def __init__(self, name, state='present', tables=(), mode='queued', server=None, target=None,
                 batch_size=1000, backfill=False, flush=False, force=False, verify_target=True,
                 owner=q.OWNER_DEFAULT, flush_role=None):
        self.name = check_set_name(name)
        self.state = state
        self.tables = list(tables)
        self.mode = mode
        self.server = server or default_server_name(name)
        target = target or {}
        self.server_options = server_options_from_target(target, name)
        self.user = target.get('user')
        self.password = target.get('password')
        self.batch_size = batch_size
        self.backfill = backfill
        self.flush = flush
        self.force = force
        self.verify_target = verify_target
        self.owner = owner
        # the login a scheduler calls tablesync.flush as: None leaves the grants alone, '' means
        # none (grants to an earlier one are revoked)
        self.flush_role = flush_role

    @property
    def server_managed(self):
        return self.server_options is not None


# ---- current state (filled by the module's catalog reader, or by tests) ---------------------

class RoutineState(object):
    def __init__(self, name, identity, result, source, definer=False, config=None, comment=None,
                 public_execute=False, owner=None, monitor_execute=False, executors=()):
        self.name = name
        self.identity = identity
        self.result = result
        self.source = source
        self.definer = definer
        self.config = list(config or [])
        self.comment = comment
        self.public_execute = public_execute
        self.owner = owner
        self.monitor_execute = monitor_execute
        # roles granted EXECUTE other than PUBLIC, the owner and pg_monitor
        self.executors = sorted(executors or ())

    @property
    def key(self):
        return (self.name, self.identity)

    @property
    def ours(self):
        return (self.comment or '').startswith(q.MARKER) or self._header() is not None

    def _header(self):
        return _HEADER_RE.match(self.source or '')

    @property
    def capture_id(self):
        """The table id of a per-table capture function (None for the shared routines)."""
        match = CAPTURE_NAME_RE.match(self.name)
        return int(match.group(1)) if match and self.identity == '' else None

    @property
    def version(self):
        match = _VERSION_RE.match(self.comment or '') or self._header()
        return int(match.group(1)) if match else None


class Environment(object):
    """Database-wide facts: owner role, extension, schema, storage, routines, server, mapping.

    ``dblink_schema``: where dblink is (None: to be created in ``tablesync``), as
    ``quote_ident()`` prints it in ``search_path_schema``; ``owner``: None (the owner role does
    not exist) or a dict of its attributes (``OWNER_FORBIDDEN`` keys); ``mapping``: None (the
    owner role has no mapping) or a dict of its options; ``login_mapping``: whether the login
    role still has a mapping on the server (routines v1 used it); ``set_triggers``: the set's
    triggers on any table, as (schema, table, trigger); ``legacy_triggers``: row triggers of any
    set that call the v1 ``capture_row``; ``dblink_servers``: foreign servers using dblink_fdw;
    ``schema_leftovers``: objects in schema tablesync that are not ours (nor dblink's);
    ``owners``: storage table name -> owner; ``server_usage``: whether the owner role may use
    the server.
    """

    def __init__(self, role, dblink_schema=None, dblink_available=True, schema_exists=False,
                 storage=(), commit_trigger=False, routines=(), server=None, mapping=None,
                 mapping_exists=False, search_path_schema=None, set_triggers=(),
                 dblink_servers=(), schema_leftovers=0, owner=None, schema_owner=None,
                 owners=None, server_usage=False, login_mapping=False, legacy_triggers=(),
                 monitor_usage=False, superuser=True, follow_storage=True, schema_index=False,
                 event_trigger=None, version_num=160000, schema_users=()):
        self.role = role
        self.dblink_schema = dblink_schema
        self.dblink_available = dblink_available
        self.schema_exists = schema_exists
        self.storage = set(storage)
        self.commit_trigger = commit_trigger
        routines = list(routines)
        self.routines = dict((r.key, r) for r in routines if r.capture_id is None)
        self.captures = dict((r.capture_id, r) for r in routines if r.capture_id is not None)
        self.server = server
        self.mapping = mapping
        self.mapping_exists = mapping_exists or mapping is not None
        self.search_path_schema = search_path_schema or dblink_schema or q.SCHEMA
        self.set_triggers = [tuple(t) for t in set_triggers]
        self.dblink_servers = list(dblink_servers)
        self.schema_leftovers = schema_leftovers
        self.owner = owner
        self.schema_owner = schema_owner
        self.owners = dict(owners or {})
        self.server_usage = server_usage
        self.login_mapping = login_mapping
        self.legacy_triggers = [tuple(t) for t in legacy_triggers]
        self.monitor_usage = monitor_usage
        # roles granted USAGE on the schema other than its owner and pg_monitor
        self.schema_users = sorted(schema_users or ())
        # routines v3 (follow.py): storage columns, index and the event trigger
        self.superuser = superuser
        self.version_num = version_num
        self.follow_storage = follow_storage
        self.schema_index = schema_index
        self.event_trigger = event_trigger

    @property
    def storage_complete(self):
        return all(name in self.storage for name, _ddl in q.STORAGE)

    @property
    def installed_version(self):
        versions = [r.version for r in self.routines.values() if r.version is not None]
        return max(versions) if versions else None

    @property
    def upgrading(self):
        """Routines v1 (jsonb capture) are installed: the storage and every set move to v2."""
        installed = self.installed_version
        return installed is not None and installed < 2


class TriggerState(object):
    def __init__(self, name, function_schema, function, args, type_, enabled=ENABLED_ORIGIN):
        self.name = name
        self.function_schema = function_schema
        self.function = function
        self.args = list(args)
        self.type = type_
        self.enabled = enabled

    @property
    def mode(self):
        return self.args[1] if len(self.args) > 1 else None


class SourceTable(object):
    """A source table: ``outputs`` maps each column to its type's output function (schema,
    name); ``unique_keys``: column lists of its primary key and unique indexes on NOT NULL
    columns (no expressions, no predicate)."""

    def __init__(self, schema, name, exists=True, kind='r', partition=False, primary_key=(),
                 columns=(), generated=(), triggers=(), outputs=None, unique_keys=(),
                 numbers=None):
        self.schema = schema
        self.name = name
        self.exists = exists
        self.kind = kind
        self.partition = partition
        self.primary_key = list(primary_key)
        self.columns = list(columns)
        self.generated = list(generated)
        self.triggers = dict((t.name, t) for t in triggers)
        self.outputs = dict(outputs or {})
        self.unique_keys = [list(k) for k in unique_keys]
        # column -> attnum (what the event trigger of routines v3 follows columns by)
        self.numbers = dict(numbers) if numbers is not None else dict(
            (c, i + 1) for i, c in enumerate(self.columns))

    @property
    def key(self):
        return (self.schema, self.name)


class ConfigTable(object):
    """A row of tablesync.trigger_tables (``key_columns`` empty: keyless)."""

    FIELDS = ('target_schema', 'target_table', 'key_columns', 'columns', 'numbers', 'follow')

    def __init__(self, id_, source_schema, source_table, target_schema, target_table, key_columns,
                 columns, backfilled=False, set_name=None, mode=None, numbers=None, follow=False):
        self.id = id_
        self.source_schema = source_schema
        self.source_table = source_table
        self.target_schema = target_schema
        self.target_table = target_table
        self.key_columns = list(key_columns)
        self.columns = list(columns)
        self.backfilled = backfilled
        self.set_name = set_name
        self.mode = mode
        # attnums of ``columns`` (None: written by routines v2); ``follow``: the table is synced
        # with all its columns, so columns added to it join (routines v3, follow.py)
        self.numbers = list(numbers) if numbers is not None else None
        self.follow = bool(follow)

    @property
    def source(self):
        return (self.source_schema, self.source_table)

    @property
    def target(self):
        return (self.target_schema, self.target_table)

    def values(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS)

    def as_dict(self):
        return {'name': format_qualified(*self.source), 'target': format_qualified(*self.target),
                'key_columns': list(self.key_columns), 'columns': list(self.columns),
                'keyless': not self.key_columns, 'backfilled': bool(self.backfilled)}


class SetState(object):
    """The set's rows in the storage tables (empty when the storage does not exist);
    ``other_tables``: ConfigTables of the other sets (with set_name and mode; their capture is
    rebuilt by an upgrade); ``queued``: changes queued by all sets."""

    def __init__(self, row=None, tables=(), backlog=0, other_sets=0, max_table_id=0,
                 other_tables=(), queued=0):
        self.row = row
        self.tables = list(tables)
        self.backlog = backlog
        self.other_sets = other_sets
        self.max_table_id = max_table_id
        self.other_tables = list(other_tables)
        self.queued = queued
