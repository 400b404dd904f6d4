# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical replication subscriptions: desired vs current state -> statements (pure, no I/O).

``desired_from_params(params)`` validates and normalises the module parameters,
``current_from_row(row, version, ...)`` the catalog row read by ``catalog_query()``, and
``plan(desired, current, server_version)`` returns the ``Statement`` list that turns one into the
other. Every version dependency is in the ``OPTIONS`` table. Identifiers are composed with
``psycopg2.sql.Identifier``; values are ``%s`` parameters; the publisher connection string is a
``Secret`` shown with its password masked.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time
from collections import namedtuple

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import (
    build_conninfo, check_key, parse_conninfo, quote_value, redact_conninfo, secrets_of)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NAMEDATALEN, check_identifier, format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import (
    PG10, PG14, PG15, PG16, PG17, PG18, requirement_message, version_text)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

MIN_VERSION = PG10  # CREATE SUBSCRIPTION exists since PostgreSQL 10

# slot_name = NONE: a subscription without a replication slot. Slot names are lower case only,
# so the upper-case word cannot be a real slot name.
SLOT_NONE = 'NONE'

_SLOT_NAME_RE = re.compile(r'^[a-z0-9_]+$')

# skip_lsn = NONE: clear a pending skip (ALTER SUBSCRIPTION ... SKIP (lsn = NONE)).
SKIP_NONE = 'NONE'
_LSN_RE = re.compile(r'^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$')

# on_lost_slot: what to do when the subscription's slot on the publisher was invalidated
# (pg_replication_slots.wal_status = 'lost') or no longer exists.
LOST_SLOT_ACTIONS = ('ignore', 'fail', 'rebuild')


class SubscriptionError(TablesyncError):
    """A desired state that cannot be reached; the message says why and what to do."""


# ---- the option table: every version dependency lives here ---------------------------------
#
# name:            module option and CREATE/ALTER SUBSCRIPTION parameter
# column:          pg_subscription column holding it (None: create-only, not stored)
# since:           first version CREATE SUBSCRIPTION accepts it
# alter_since:     first version ALTER SUBSCRIPTION ... SET accepts it (None: never)
# needs_disabled:  ALTER ... SET only works on a disabled subscription (the module disables it
#                  for the change and enables it again when it is to stay enabled)
# outside_tx:      ALTER ... SET with it cannot run inside a transaction block
# value_since:     values that need a later version than the option itself
SubOption = namedtuple('SubOption', ['name', 'column', 'since', 'alter_since', 'needs_disabled',
                                     'outside_tx', 'value_since'])

OPTIONS = (
    SubOption('enabled', 'subenabled', PG10, PG10, False, False, {}),
    SubOption('slot_name', 'subslotname', PG10, PG10, False, False, {}),
    SubOption('synchronous_commit', 'subsynccommit', PG10, PG10, False, False, {}),
    SubOption('binary', 'subbinary', PG14, PG14, False, False, {}),
    SubOption('streaming', 'substream', PG14, PG14, False, False, {'parallel': PG16}),
    SubOption('two_phase', 'subtwophasestate', PG15, PG18, True, True, {}),
    SubOption('disable_on_error', 'subdisableonerr', PG15, PG15, False, False, {}),
    SubOption('origin', 'suborigin', PG16, PG16, False, False, {}),
    SubOption('password_required', 'subpasswordrequired', PG16, PG16, False, False, {}),
    SubOption('run_as_owner', 'subrunasowner', PG16, PG16, False, False, {}),
    SubOption('failover', 'subfailover', PG17, PG17, True, True, {}),
    SubOption('create_slot', None, PG10, None, False, False, {}),
    SubOption('copy_data', None, PG10, None, False, False, {}),
    SubOption('connect', None, PG10, None, False, False, {}),
)

OPTION_BY_NAME = dict((o.name, o) for o in OPTIONS)
OPTION_NAMES = tuple(o.name for o in OPTIONS)
STORED_OPTIONS = tuple(o for o in OPTIONS if o.column)
CREATE_ONLY = tuple(o.name for o in OPTIONS if o.alter_since is None)

# Defaults of CREATE SUBSCRIPTION (shown in a check-mode diff of a subscription to be created).
_DEFAULTS = {
    'enabled': True, 'synchronous_commit': 'off', 'binary': False, 'streaming': 'off',
    'two_phase': False, 'disable_on_error': False, 'origin': 'any', 'password_required': True,
    'run_as_owner': False, 'failover': False,
}
_DEFAULTS_SINCE = {PG18: {'streaming': 'parallel'}}

# pg_subscription_rel.srsubstate
TABLE_STATES = {
    'i': 'initialize',
    'd': 'data copy',
    'f': 'finished copy',
    's': 'synchronized',
    'r': 'ready',
}

# the publisher dict of the module: option -> libpq keyword
PUBLISHER_KEYS = ('host', 'port', 'dbname', 'user', 'password', 'sslmode', 'sslrootcert',
                  'passfile', 'application_name', 'connect_timeout')


# ---- value normalisation ---------------------------------------------------------------------

_ON_OFF = {'true': 'on', 'yes': 'on', '1': 'on', 'on': 'on',
           'false': 'off', 'no': 'off', '0': 'off', 'off': 'off'}
SYNC_COMMIT_VALUES = ('on', 'off', 'local', 'remote_write', 'remote_apply')
STREAMING_VALUES = ('on', 'off', 'parallel')
ORIGIN_VALUES = ('any', 'none')


def _on_off_text(value):
    """YAML turns unquoted on/off into booleans: accept both spellings."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    text = str(value).strip().lower()
    return _ON_OFF.get(text, text)


def _choice(option, allowed, value):
    if value not in allowed:
        raise SubscriptionError('%s must be one of %s, got %r'
                                % (option, ', '.join(allowed), value))
    return value


def normalize_synchronous_commit(value):
    return _choice('synchronous_commit', SYNC_COMMIT_VALUES, _on_off_text(value))


def normalize_streaming(value):
    return _choice('streaming', STREAMING_VALUES, _on_off_text(value))


def normalize_origin(value):
    return _choice('origin', ORIGIN_VALUES, str(value).strip().lower())


def normalize_slot_name(value):
    """``NONE`` (any case) means no slot; anything else must be a valid replication slot name."""
    text = str(value)
    if text.lower() == 'none':
        return SLOT_NONE
    check_slot_name(text)
    return text


def is_slot_name(text):
    """PostgreSQL's rule for replication slot names (ReplicationSlotValidateName)."""
    return bool(text) and len(text) <= NAMEDATALEN - 1 and bool(_SLOT_NAME_RE.match(text))


def check_slot_name(text, what='slot_name'):
    if not is_slot_name(text):
        raise SubscriptionError(
            '%s %r is not a valid replication slot name: use 1 to %d lower-case letters, digits '
            'and underscores (or NONE for no slot)' % (what, text, NAMEDATALEN - 1))
    return text


def check_publication_name(name):
    """A publication name the subscriber's walreceiver can stream.

    The walreceiver sends ``publication_names`` to the publisher as a quoted literal and a
    backslash in a name breaks that command (PostgreSQL 15: "syntax error" when streaming
    starts, after CREATE SUBSCRIPTION succeeded): refused before anything is created.
    """
    name = check_identifier(name, 'publication name')
    if '\\' in name:
        raise SubscriptionError('publication name %r contains a backslash: PostgreSQL\'s '
                                'walreceiver cannot stream such a publication (START_REPLICATION '
                                'fails with a syntax error on the publisher); rename the '
                                'publication' % (name,))
    return name


def parse_lsn(text):
    """``'0/14C0378'`` -> 21758840 (a pg_lsn as an integer); None for None or ``0/0``."""
    if text is None:
        return None
    match = _LSN_RE.match(str(text).strip())
    if not match:
        raise SubscriptionError('%r is not a WAL location (LSN): write it as PostgreSQL shows it, '
                                'for example 0/14C0378' % (text,))
    value = (int(match.group(1), 16) << 32) | int(match.group(2), 16)
    return value or None


def format_lsn(value):
    return '%X/%X' % (value >> 32, value & 0xFFFFFFFF)


def normalize_skip_lsn(value):
    """``NONE`` (any case) clears a pending skip; anything else must be a non-zero LSN."""
    text = str(value).strip()
    if text.lower() == 'none':
        return SKIP_NONE
    lsn = parse_lsn(text)
    if lsn is None:
        raise SubscriptionError('skip_lsn 0/0 is not a transaction\'s finish LSN (use NONE to '
                                'clear a pending skip)')
    return format_lsn(lsn)


_NORMALIZERS = {
    'slot_name': normalize_slot_name,
    'synchronous_commit': normalize_synchronous_commit,
    'streaming': normalize_streaming,
    'origin': normalize_origin,
}


def _decode_stream(value):
    # PostgreSQL 14/15: boolean; 16+: "char" f/t/p
    if isinstance(value, bool):
        return 'on' if value else 'off'
    return {'f': 'off', 't': 'on', 'p': 'parallel'}.get(value, value)


_DECODERS = {
    'subslotname': lambda v: SLOT_NONE if v is None else v,
    'subsynccommit': lambda v: _ON_OFF.get(v, v),
    'substream': _decode_stream,
    'subtwophasestate': lambda v: v != 'd',  # d = disabled, p = pending, e = enabled
    'suborigin': lambda v: v.lower() if v else v,
}


# ---- the publisher connection ----------------------------------------------------------------

def secret_variants(values):
    """Each secret as given and as it appears once quoted for conninfo and for SQL."""
    found = set()
    for value in values:
        if not value:
            continue
        for form in (value, quote_value(value)):
            found.update([form, form.replace("'", "''"), form.replace('\\', '\\\\'),
                          form.replace('\\', '\\\\').replace("'", "''")])
    return sorted(found, key=len, reverse=True)


class Conninfo(object):
    """A publisher connection: the real conninfo and a display form with secrets masked."""

    def __init__(self, params):
        self.params = dict(params)
        self.text = build_conninfo(self.params)
        self.redacted = redact_conninfo(self.params)
        self.display = build_conninfo(self.redacted)
        self.secrets = secret_variants(secrets_of(self.params))

    @classmethod
    def from_text(cls, text):
        return cls(parse_conninfo(text))

    def as_param(self):
        """The value for a ``%s`` placeholder: a Secret shown with the password masked."""
        if self.secrets:
            return Secret(self.text, display=self.display, sensitive=self.secrets)
        return self.text

    def __eq__(self, other):
        return isinstance(other, Conninfo) and self.params == other.params

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return 'Conninfo(%s)' % self.display


def publisher_conninfo(publisher):
    """The module's ``publisher`` dict -> Conninfo (values normalised as libpq reads them)."""
    publisher = publisher or {}
    params = dict((k, publisher.get(k)) for k in PUBLISHER_KEYS if publisher.get(k) is not None)
    for key, value in sorted((publisher.get('options') or {}).items()):
        check_key(key)
        if key in ('password', 'sslpassword'):
            raise SubscriptionError(
                'publisher.options must not contain %s: pass the password as publisher.password, '
                'which is never logged' % key)
        if key in params:
            raise SubscriptionError('publisher.options.%s repeats publisher.%s: give it once'
                                    % (key, key))
        if value is not None:
            params[key] = value
    if not params:
        raise SubscriptionError('publisher must set at least one connection option')
    # round trip through the libpq grammar: every value as the string libpq will see
    return Conninfo(parse_conninfo(build_conninfo(params)))


# ---- desired state ---------------------------------------------------------------------------

def desired_from_params(params):
    """Validate and normalise module parameters into the desired-state dict used by plan()."""
    name = check_identifier(params['name'], 'subscription name')
    state = params.get('state') or 'present'
    desired = {
        'name': name,
        'state': state,
        'publications': None,
        'publisher': None,
        'options': {},
        'owner': None,
        'comment': params.get('comment'),
        'refresh': params.get('refresh', True) is not False,
        'skip_lsn': None,
        'on_lost_slot': params.get('on_lost_slot') or 'ignore',
    }
    if desired['on_lost_slot'] not in LOST_SLOT_ACTIONS:
        raise SubscriptionError('on_lost_slot must be one of %s, got %r'
                                % (', '.join(LOST_SLOT_ACTIONS), desired['on_lost_slot']))
    if params.get('skip_lsn') is not None:
        desired['skip_lsn'] = normalize_skip_lsn(params['skip_lsn'])
    if params.get('publications') is not None:
        pubs = [check_publication_name(p) for p in params['publications']]
        if not pubs:
            raise SubscriptionError('publications must name at least one publication')
        desired['publications'] = sorted(set(pubs))
    if params.get('publisher') is not None:
        desired['publisher'] = publisher_conninfo(params['publisher'])
    if params.get('owner') is not None:
        desired['owner'] = check_identifier(params['owner'], 'owner')
    for option in OPTION_NAMES:
        value = params.get(option)
        if value is not None:
            desired['options'][option] = _NORMALIZERS.get(option, lambda v: v)(value)
    check_option_combinations(desired['options'])
    return desired


def check_option_combinations(options):
    """The combinations CREATE/ALTER SUBSCRIPTION refuses, reported before anything runs."""
    if options.get('connect') is False:
        for option in ('enabled', 'create_slot', 'copy_data'):
            if options.get(option) is True:
                raise SubscriptionError('connect: false cannot be combined with %s: true '
                                        '(nothing is copied or started without a connection)'
                                        % option)
    if options.get('slot_name') == SLOT_NONE:
        for option in ('enabled', 'create_slot'):
            if options.get(option) is True:
                raise SubscriptionError('slot_name: NONE cannot be combined with %s: true'
                                        % option)


def required_versions(desired):
    """[(minimum server version, feature text)] for every option the task sets."""
    needs = [(MIN_VERSION, 'Logical replication subscriptions')]
    for name, value in sorted(desired['options'].items()):
        option = OPTION_BY_NAME[name]
        if option.since > MIN_VERSION:
            needs.append((option.since, 'Subscription option %s' % name))
        if value in option.value_since:
            needs.append((option.value_since[value], 'Subscription option %s = %s' % (name, value)))
    if desired.get('skip_lsn') is not None:
        needs.append((PG15, 'skip_lsn (ALTER SUBSCRIPTION ... SKIP)'))
    return needs


def check_versions(desired, server_version):
    """Raise SubscriptionError naming the first feature the server is too old for."""
    for minimum, feature in required_versions(desired):
        if server_version < minimum:
            raise SubscriptionError(requirement_message(feature, minimum, server_version))


def defaults(server_version):
    values = dict(_DEFAULTS)
    for since, changed in sorted(_DEFAULTS_SINCE.items()):
        if server_version >= since:
            values.update(changed)
    return dict((k, v) for k, v in values.items() if OPTION_BY_NAME[k].since <= server_version)


# ---- statements ------------------------------------------------------------------------------

def _ident_list(names):
    return sql.SQL(', ').join(sql.Identifier(n) for n in names)


# parameter names that may appear in WITH (...) / SET (...): a fixed list, never user input
_PARAMETER_NAMES = frozenset(OPTION_NAMES + ('refresh',))


def _option_list(pairs):
    """``[(option, value)]`` -> (``a = %s, b = NONE`` composable, params)."""
    parts = []
    params = []
    for name, value in pairs:
        if name not in _PARAMETER_NAMES:
            raise ValueError('unknown subscription parameter %r' % name)
        if name == 'slot_name' and value == SLOT_NONE:
            parts.append(sql.SQL('slot_name = NONE'))
        else:
            parts.append(sql.SQL('{} = %s').format(sql.SQL(name)))
            params.append(value)
    return sql.SQL(', ').join(parts), params


def _with(pairs):
    if not pairs:
        return sql.SQL(''), []
    body, params = _option_list(pairs)
    return sql.SQL(' WITH ({})').format(body), params


def _alter(name, tail, params=(), autocommit=False):
    query = sql.SQL('ALTER SUBSCRIPTION {} ').format(sql.Identifier(name)) + tail
    return Statement(query, params, autocommit=autocommit)


def creates_slot(options):
    return (options.get('connect') is not False and options.get('create_slot') is not False
            and options.get('slot_name') != SLOT_NONE)


def create_statement(desired):
    options = desired['options']
    pairs = [(o, options[o]) for o in OPTION_NAMES if o in options]
    with_clause, with_params = _with(pairs)
    query = sql.SQL('CREATE SUBSCRIPTION {} CONNECTION %s PUBLICATION {}{}').format(
        sql.Identifier(desired['name']), _ident_list(desired['publications']), with_clause)
    return Statement(query, [desired['publisher'].as_param()] + with_params,
                     autocommit=creates_slot(options))


def drop_statement(name, has_slot):
    # DROP SUBSCRIPTION with a slot drops it on the publisher: not in a transaction block
    return Statement(sql.SQL('DROP SUBSCRIPTION {}').format(sql.Identifier(name)),
                     autocommit=has_slot)


def enable_statement(name, enable):
    return _alter(name, sql.SQL('ENABLE' if enable else 'DISABLE'))


class WaitForWorkersExit(Statement):
    """After DISABLE: wait until the subscription's workers have exited.

    DISABLE only asks the apply worker to stop; until it has, PostgreSQL 18 refuses
    ``SET (two_phase)`` ("cannot alter two_phase when logical replication worker is still
    running") and the publisher refuses to alter a slot its walsender still holds
    (``failover``). Runs in autocommit, so the DISABLE before it is committed; polls
    ``pg_stat_subscription`` for up to ``timeout`` seconds, then lets the next statement report
    what the server says."""

    QUERY = ('SELECT count(*) FROM pg_catalog.pg_stat_subscription '
             'WHERE subname = %s AND pid IS NOT NULL')

    def __init__(self, name, timeout=60.0, interval=0.2):
        super(WaitForWorkersExit, self).__init__(sql.SQL(self.QUERY), [name], autocommit=True)
        self.name = name
        self.timeout = timeout
        self.interval = interval

    def execute(self, cursor):
        deadline = time.time() + self.timeout
        while True:
            cursor.execute(self.QUERY, (self.name,))
            if cursor.fetchone()[0] == 0 or time.time() >= deadline:
                return
            time.sleep(self.interval)


def connection_statement(name, conninfo):
    return _alter(name, sql.SQL('CONNECTION %s'), [conninfo.as_param()])


def set_options_statement(name, changes):
    body, params = _option_list(changes)
    outside_tx = any(OPTION_BY_NAME[o].outside_tx for o, _v in changes)
    return _alter(name, sql.SQL('SET ({})').format(body), params, autocommit=outside_tx)


def publication_statement(name, verb, publications, refresh, copy_data):
    pairs = [('refresh', refresh)]
    if refresh and copy_data is not None:
        pairs.append(('copy_data', copy_data))
    with_clause, params = _with(pairs)
    tail = sql.SQL('{} PUBLICATION {}{}').format(sql.SQL(verb), _ident_list(publications),
                                                 with_clause)
    # with refresh = true PostgreSQL refuses to run it inside a transaction block
    return _alter(name, tail, params, autocommit=refresh)


def refresh_statement(name, copy_data):
    with_clause, params = _with([] if copy_data is None else [('copy_data', copy_data)])
    return _alter(name, sql.SQL('REFRESH PUBLICATION{}').format(with_clause), params,
                  autocommit=True)


def skip_statement(name, lsn):
    """``ALTER SUBSCRIPTION ... SKIP (lsn = ...)``; ``lsn`` a normalised text or SKIP_NONE."""
    if lsn == SKIP_NONE:
        return _alter(name, sql.SQL('SKIP (lsn = NONE)'))
    return _alter(name, sql.SQL('SKIP (lsn = %s)'), [lsn])


def truncate_statement(tables):
    """``TRUNCATE`` of ``[(schema, table)]`` in one statement (no CASCADE: a foreign key from a
    table outside the list makes it fail, and the transaction with it)."""
    return Statement(sql.SQL('TRUNCATE {}').format(
        sql.SQL(', ').join(sql.Identifier(schema, table) for schema, table in tables)))


def tables_to_empty(published, subscribed):
    """``[(schema, table)]`` published but not yet in the subscription (``subscribed``: its
    ``tables`` entries): what a refresh will start to copy, sorted."""
    have = set(t['name'] for t in subscribed)
    return sorted(set(t for t in published if format_qualified(*t) not in have))


def owner_statement(name, owner):
    return _alter(name, sql.SQL('OWNER TO {}').format(sql.Identifier(owner)))


def comment_statement(name, comment):
    return Statement(sql.SQL('COMMENT ON SUBSCRIPTION {} IS %s').format(sql.Identifier(name)),
                     [comment or None])


# ---- planning --------------------------------------------------------------------------------

def plan(desired, current, server_version):
    """Statements that turn ``current`` (None: missing) into ``desired``."""
    if desired['state'] == 'absent':
        return plan_drop(desired['name'], current)
    check_versions(desired, server_version)
    if current is None:
        return plan_create(desired)
    statements = plan_alter(desired, current, server_version)
    if desired['state'] == 'refreshed' and not refreshes_with_publication_change(desired, current):
        statements.append(plan_refresh(desired, current))
    skip = skip_change(desired, current)
    if skip is not None:
        statements.append(skip_statement(desired['name'], skip))
    return statements


def skip_change(desired, current):
    """The SKIP to run (normalised LSN text or SKIP_NONE), or None when nothing is to do.

    Idempotent: a skip already pending with the same LSN, or an LSN the subscription has
    already applied or skipped past (its origin's ``remote_lsn`` is at or beyond it), is no
    change. When the origin progress cannot be read, the statement is planned and PostgreSQL
    refuses an LSN that is not beyond it.
    """
    want = desired.get('skip_lsn')
    if want is None or current is None:
        return None
    have = current.get('skip_lsn')
    if want == SKIP_NONE:
        return SKIP_NONE if have else None
    lsn = parse_lsn(want)
    if have == lsn:
        return None
    origin = current.get('origin_lsn')
    if origin is not None and lsn <= origin:
        return None
    return want


def plan_rebuild(desired, current, tables):
    """Re-create a subscription whose replication slot is lost: one transaction on the
    subscriber that disables it, detaches it from the dead slot, drops it and empties its
    target tables ``[(schema, table)]``; then (after the dead slot was dropped on the
    publisher) CREATE SUBSCRIPTION copying all rows again.

    Returns (statements before the slot drop, statements after). A run interrupted between
    the two leaves no subscription and empty tables: the next run creates it.
    """
    check_creatable(desired)
    first = plan_detach_and_drop(desired['name'], current)
    if tables:
        first.append(truncate_statement(tables))
    created = dict(desired)
    created['options'] = dict((k, v) for k, v in desired['options'].items()
                              if k not in ('copy_data', 'connect', 'create_slot'))
    return first, plan_create(created)


def lost_slot_status(slot):
    """'lost', 'missing' or None (usable) for a row of the publisher's pg_replication_slots
    (None: no such slot). Invalidated: ``wal_status`` lost, or an ``invalidation_reason``
    (PostgreSQL 17+; 18 invalidates idle slots without losing their WAL)."""
    if slot is None:
        return 'missing'
    if slot.get('wal_status') == 'lost' or slot.get('invalidation_reason'):
        return 'lost'
    return None


# pg_replication_slots.invalidation_reason (17+) -> why, and what to look at
INVALIDATION_CAUSES = {
    'wal_removed': 'the WAL it needed was removed, see max_slot_wal_keep_size',
    'rows_removed': 'rows it needed were removed by VACUUM (on a standby: see hot_standby_feedback)',
    'wal_level_insufficient': 'wal_level was lowered below logical on the server',
    'idle_timeout': 'it was idle longer than idle_replication_slot_timeout allows',
}


def invalidation_cause(slot):
    """Why an invalidated slot was invalidated, from the columns the server has."""
    reason = (slot or {}).get('invalidation_reason')
    if reason:
        return '%s: %s' % (reason, INVALIDATION_CAUSES.get(reason, 'see the server log'))
    return 'wal_status lost: the WAL it needed was removed, see max_slot_wal_keep_size'


def refreshes_with_publication_change(desired, current):
    """The publication change of the plan already refreshes the table list."""
    return (publication_change(desired, current) is not None and desired['refresh']
            and bool(final_enabled(desired, current)))


def plan_drop(name, current):
    if current is None:
        return []
    return [drop_statement(name, current['options'].get('slot_name') != SLOT_NONE)]


def plan_detach_and_drop(name, current):
    """Drop without touching the publisher: disable, forget the slot, drop.

    For a publisher that cannot be reached; the replication slot stays on the publisher.
    """
    statements = []
    if current['options'].get('enabled'):
        statements.append(enable_statement(name, False))
    if current['options'].get('slot_name') != SLOT_NONE:
        statements.append(set_options_statement(name, [('slot_name', SLOT_NONE)]))
    statements.append(drop_statement(name, False))
    return statements


def plan_create(desired):
    check_creatable(desired)
    name = desired['name']
    statements = [create_statement(desired)]
    if desired['owner']:
        statements.append(owner_statement(name, desired['owner']))
    if desired['comment']:
        statements.append(comment_statement(name, desired['comment']))
    return statements


def check_creatable(desired):
    """Raise SubscriptionError when CREATE SUBSCRIPTION would be refused or incomplete."""
    name = desired['name']
    if desired.get('skip_lsn') not in (None, SKIP_NONE):
        raise SubscriptionError('skip_lsn applies to an existing subscription; subscription %s '
                                'does not exist' % name)
    missing = [k for k in ('publications', 'publisher') if not desired[k]]
    if missing:
        raise SubscriptionError('subscription %s does not exist and cannot be created without %s'
                                % (name, ' and '.join(missing)))
    options = desired['options']
    if creates_slot(options) and 'slot_name' not in options and not is_slot_name(name):
        raise SubscriptionError(
            'the replication slot is named after the subscription by default, and %r is not '
            'a valid slot name (lower-case letters, digits and underscores only): set '
            'slot_name' % name)
    if options.get('slot_name') == SLOT_NONE and (
            options.get('enabled') is not False or options.get('create_slot') is not False):
        raise SubscriptionError('slot_name: NONE needs enabled: false and create_slot: false')


def option_changes(desired, current, server_version):
    """[(option, desired value)] of stored options that differ, in table order.

    Create-only options (create_slot, copy_data, connect) are not compared. An option that
    this server version cannot alter raises SubscriptionError.
    """
    changes = []
    for option in STORED_OPTIONS:
        if option.name == 'enabled' or option.name not in desired['options']:
            continue
        want = desired['options'][option.name]
        have = current['options'].get(option.name)
        if want == have:
            continue
        if option.alter_since is None or server_version < option.alter_since:
            raise SubscriptionError(
                '%s of subscription %s is %s and cannot be changed in place on PostgreSQL %s '
                '(ALTER SUBSCRIPTION supports it from PostgreSQL %s): drop and re-create the '
                'subscription to change it' % (option.name, desired['name'], _show(have),
                                               version_text(server_version),
                                               version_text(option.alter_since)))
        changes.append((option.name, want))
    return changes


def _show(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def connection_changed(desired, current):
    if desired['publisher'] is None:
        return False
    if current['conninfo_status'] == 'unparseable':
        return True
    if current['conninfo_status'] != 'ok':
        return False  # cannot be compared: the module warns
    return desired['publisher'] != current['publisher']


def publication_change(desired, current):
    """(verb, publications) or None: ADD/DROP for pure additions/removals, else SET."""
    want = desired['publications']
    if want is None or set(want) == set(current['publications']):
        return None
    have = set(current['publications'])
    added = sorted(set(want) - have)
    removed = sorted(have - set(want))
    return ('SET', want) if added and removed else ('ADD', added) if added else ('DROP', removed)


def final_enabled(desired, current):
    return desired['options'].get('enabled', current['options'].get('enabled'))


def plan_alter(desired, current, server_version):
    name = desired['name']
    changes = option_changes(desired, current, server_version)
    enabled_now = current['options'].get('enabled')
    enabled_then = final_enabled(desired, current)
    slot_then = desired['options'].get('slot_name', current['options'].get('slot_name'))
    if enabled_then and slot_then == SLOT_NONE:
        raise SubscriptionError('subscription %s cannot be enabled without a replication slot '
                                '(slot_name is NONE): set enabled: false or a slot_name' % name)
    needs_disabled = any(OPTION_BY_NAME[o].needs_disabled for o, _v in changes)
    pause = enabled_now and enabled_then and needs_disabled
    statements = []
    if enabled_now and (not enabled_then or pause):
        statements.append(enable_statement(name, False))
        if needs_disabled:
            statements.append(WaitForWorkersExit(name))
    if connection_changed(desired, current):
        statements.append(connection_statement(name, desired['publisher']))
    if changes:
        statements.append(set_options_statement(name, changes))
    if enabled_then and (not enabled_now or pause):
        statements.append(enable_statement(name, True))
    pub_change = publication_change(desired, current)
    if pub_change:
        verb, publications = pub_change
        if server_version < PG14 and verb != 'SET':
            verb, publications = 'SET', desired['publications']
        # PostgreSQL refuses refresh on a disabled subscription
        refresh = desired['refresh'] and bool(enabled_then)
        statements.append(publication_statement(name, verb, publications, refresh,
                                                desired['options'].get('copy_data')))
    if desired['owner'] and desired['owner'] != current['owner']:
        statements.append(owner_statement(name, desired['owner']))
    if desired['comment'] is not None and (desired['comment'] or None) != current['comment']:
        statements.append(comment_statement(name, desired['comment']))
    return statements


def plan_refresh(desired, current):
    if not final_enabled(desired, current):
        raise SubscriptionError('state: refreshed needs an enabled subscription (PostgreSQL '
                                'refuses to refresh disabled subscription %s)' % desired['name'])
    return refresh_statement(desired['name'], desired['options'].get('copy_data'))


def refresh_skipped(desired, current):
    """True when publications change but refresh cannot run because the subscription is
    (to be) disabled: the module warns that new tables need a refresh after enabling."""
    return (current is not None and desired['state'] != 'absent' and desired['refresh']
            and publication_change(desired, current) is not None
            and not final_enabled(desired, current))
