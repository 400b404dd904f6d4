# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server settings: desired values vs the server's -> ALTER SYSTEM statements (pure, no I/O).

Values are compared the way PostgreSQL reads them (a port of guc.c's parse_bool, parse_int,
parse_real and convert_to_base_unit): ``'10GB'`` equals a ``min_wal_size`` of ``10240`` (unit
``MB``), ``'1GB'`` equals a ``shared_buffers`` of ``131072`` (unit ``8kB``), ``yes`` equals
``on``, enum values are case-insensitive, list values compare element by element.

A setting is in the desired state when the value the server will use after a reload or restart
(the last entry for it in the configuration files, i.e. ``postgresql.auto.conf`` once ALTER
SYSTEM wrote it; otherwise the running value) equals the desired one. So a run after an
ALTER SYSTEM that still waits for a restart changes nothing, and reports the restart.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# GUC_LIST_INPUT | GUC_LIST_QUOTE: ALTER SYSTEM double-quotes each element it is given as a
# separate value, so each element must be sent as its own literal.
LIST_QUOTE_SETTINGS = frozenset([
    'local_preload_libraries', 'oauth_validator_libraries', 'search_path',
    'session_preload_libraries', 'shared_preload_libraries', 'temp_tablespaces',
    'unix_socket_directories',
])
# GUC_LIST_INPUT only: one comma-separated string.
LIST_SETTINGS = LIST_QUOTE_SETTINGS | frozenset([
    'createrole_self_grant', 'datestyle', 'debug_io_direct', 'listen_addresses',
    'log_destination', 'restrict_nonsystem_relation_kind', 'synchronized_standby_slots',
    'wal_consistency_checking',
])
# Strings the server compares (or canonicalises) case-insensitively.
CASE_INSENSITIVE_SETTINGS = frozenset([
    'createrole_self_grant', 'datestyle', 'debug_io_direct', 'log_destination', 'log_timezone',
    'restrict_nonsystem_relation_kind', 'timezone', 'wal_consistency_checking',
])
# Settings that were booleans and became lists of aspects (PostgreSQL 18: log_connections), which
# still take the boolean spellings: on means the listed aspects, off none, 'all' every one.
ASPECT_SETTINGS = {
    'log_connections': {'on': ('receipt', 'authentication', 'authorization'),
                        'all': ('receipt', 'authentication', 'authorization',
                                'setup_durations')},
}
# ALTER SYSTEM refuses these (GUC_DISALLOW_IN_AUTO_FILE).
NOT_IN_AUTO_CONF = frozenset(['config_file', 'data_directory', 'hba_file', 'ident_file'])
# Hidden enum spellings PostgreSQL still accepts.
ENUM_ALIASES = {'wal_level': {'archive': 'replica', 'hot_standby': 'replica'}}
# Sources of a running value that is the server's own (not this session's).
SERVER_SOURCES = frozenset(['default', 'configuration file', 'command line',
                            'environment variable', 'override'])

# unit -> size in the smallest unit (bytes / microseconds), largest first as in guc.c's tables
MEMORY_UNITS = (('TB', 1024 ** 4), ('GB', 1024 ** 3), ('MB', 1024 ** 2), ('kB', 1024), ('B', 1))
TIME_UNITS = (('d', 86400 * 10 ** 6), ('h', 3600 * 10 ** 6), ('min', 60 * 10 ** 6),
              ('s', 10 ** 6), ('ms', 1000), ('us', 1))
MAX_UNIT_LEN = 3
INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1

_STRTOL = re.compile(r'\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)')
_STRTOD = re.compile(r'\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?'
                     r'|inf(?:inity)?|nan)', re.IGNORECASE)
_BASE_UNIT = re.compile(r'^([0-9]*)(B|kB|MB|GB|TB|us|ms|s|min|h|d)$')


class InvalidValue(ValueError):
    """A value PostgreSQL would refuse for a setting."""


class SettingsError(TablesyncError):
    """Problems with the desired settings (all of them, in one message)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(SettingsError, self).__init__(' '.join(self.problems))


class Setting(object):
    """One managed setting as the server has it: its pg_settings row, the value configured for
    it in the configuration files (``pg_file_settings``: the last entry wins; None when no file
    sets it or the files cannot be read), whether that entry is in ``postgresql.auto.conf``, and
    the value a RESET would fall back to (the last entry in another file)."""

    FIELDS = ('name', 'setting', 'unit', 'vartype', 'context', 'enumvals', 'min_val', 'max_val',
              'boot_val', 'source', 'pending_restart', 'shown', 'configured', 'in_auto_conf',
              'fallback')
    __slots__ = FIELDS

    def __init__(self, **attrs):
        for field in self.FIELDS:
            setattr(self, field, attrs.get(field))

    @classmethod
    def from_row(cls, row):
        """The Setting of one SETTINGS_QUERY row (a dict); None for a name the server lacks."""
        if row.get('name') is None:
            return None
        return cls(**dict((f, row.get(f)) for f in cls.FIELDS))

    @property
    def key(self):
        return self.name.lower()

    @property
    def server_value(self):
        """The value the server uses after a reload/restart, as text in base units or as
        configured: the configured value, else the running value when it is the server's own,
        else the built-in default."""
        if self.configured is not None:
            return self.configured
        if self.source in SERVER_SOURCES:
            return self.setting
        return self.boot_val

    @property
    def display(self):
        """Human-readable value for diffs: as configured, else as SHOW shows it."""
        return self.configured if self.configured is not None else self.shown


# ---- parsing values the way guc.c does --------------------------------------------------------

def parse_bool(text):
    """guc.c parse_bool(): True/False, or None when text is not a boolean."""
    value = text.lower()
    n = len(value)
    if n == 0:
        return None
    if value[0] == 't' and 'true'.startswith(value):
        return True
    if value[0] == 'f' and 'false'.startswith(value):
        return False
    if value[0] == 'y' and 'yes'.startswith(value):
        return True
    if value[0] == 'n' and 'no'.startswith(value):
        return False
    if value[0] == 'o' and n >= 2:
        if 'on'.startswith(value):
            return True
        if 'off'.startswith(value):
            return False
    if value in ('1', '0'):
        return value == '1'
    return None


def _unit_table(base_unit):
    """(table, size of base unit) for a pg_settings unit ('kB', '8kB', 'MB', 'ms', 's', ...)."""
    match = _BASE_UNIT.match(base_unit or '')
    if not match:
        return None, None
    count = int(match.group(1) or 1)
    for table in (MEMORY_UNITS, TIME_UNITS):
        sizes = dict(table)
        if match.group(2) in sizes:
            return table, count * sizes[match.group(2)]
    return None, None  # pragma: no cover - the regex only admits known units


def convert_to_base_unit(value, unit_text, base_unit):
    """guc.c convert_to_base_unit(): value in ``unit_text`` expressed in ``base_unit``, a
    fractional value rounded to a multiple of the next smaller unit; None if the unit is not
    valid for the setting."""
    stripped = unit_text.strip()
    if not stripped or len(stripped) > MAX_UNIT_LEN or any(c.isspace() for c in stripped):
        return None
    table, base_size = _unit_table(base_unit)
    if table is None:
        return None
    for index, (unit, size) in enumerate(table):
        if unit == stripped:
            converted = value * (size / base_size)
            if index + 1 < len(table):
                step = table[index + 1][1] / base_size
                converted = float(round(converted / step)) * step
            return converted
    return None


def _units_hint(base_unit):
    table, dummy = _unit_table(base_unit)
    if table is MEMORY_UNITS:
        return ' Valid units for this setting are "B", "kB", "MB", "GB", and "TB".'
    if table is TIME_UNITS:
        return ' Valid units for this setting are "us", "ms", "s", "min", "h", and "d".'
    return ' This setting does not take a unit.'


def _parse_number(text, integer):
    """(value, rest) as strtol (base 0, integers only) / strtod would read it, or None."""
    if integer:
        match = _STRTOL.match(text)
        if match and (match.end() == len(text) or text[match.end()] not in '.eE'):
            number = match.group(0).strip()
            sign = -1 if number.startswith('-') else 1
            digits = number.lstrip('+-')
            if digits[:2] in ('0x', '0X'):
                value = int(digits[2:], 16)
            elif len(digits) > 1 and digits[0] == '0':
                value = int(digits, 8)
            else:
                value = int(digits)
            if -2 ** 63 <= sign * value < 2 ** 63:  # on overflow strtod reads it again
                return float(sign * value), text[match.end():]
    match = _STRTOD.match(text)
    if not match:
        return None
    value = float(match.group(0))
    if math.isnan(value):
        return None
    return value, text[match.end():]


def parse_number(setting, text):
    """guc.c parse_int()/parse_real(): the value in the setting's base unit (rounded for
    integers). Raises InvalidValue."""
    integer = setting.vartype == 'integer'
    parsed = _parse_number(text, integer)
    if parsed is None:
        raise InvalidValue('invalid value for %s setting %s: %r'
                           % ('an integer' if integer else 'a numeric', setting.name, text))
    value, rest = parsed
    if rest.strip():
        if not setting.unit:
            raise InvalidValue('invalid value for setting %s: %r (it takes no unit)'
                               % (setting.name, text))
        value = convert_to_base_unit(value, rest, setting.unit)
        if value is None:
            raise InvalidValue('invalid value for setting %s: %r.%s'
                               % (setting.name, text, _units_hint(setting.unit)))
    if integer:
        value = int(round(value)) if math.isfinite(value) else None
        if value is None or not INT_MIN <= value <= INT_MAX:
            raise InvalidValue('invalid value for setting %s: %r exceeds the integer range'
                               % (setting.name, text))
    return value


def _check_range(setting, value, text):
    try:
        low, high = float(setting.min_val), float(setting.max_val)
    except (TypeError, ValueError):
        return
    if not low <= value <= high:
        unit = ' %s' % setting.unit if setting.unit else ''
        raise InvalidValue('%r is outside the valid range for setting %s (%s .. %s%s)'
                           % (text, setting.name, setting.min_val, setting.max_val, unit))


def _enum_value(setting, text):
    choices = dict((v.lower(), v) for v in setting.enumvals or ())
    lowered = text.lower()
    if lowered in choices:
        return choices[lowered]
    alias = ENUM_ALIASES.get(setting.key, {}).get(lowered)
    if alias:
        return alias
    as_bool = parse_bool(text)
    if as_bool is not None and 'on' in choices and 'off' in choices:
        return 'on' if as_bool else 'off'
    raise InvalidValue('invalid value for setting %s: %r (available values: %s)'
                       % (setting.name, text, ', '.join(setting.enumvals or ())))


# ---- list values ------------------------------------------------------------------------------

def split_list(text):
    """Elements of a comma-separated list value; double-quoted elements unquoted (``""`` is
    one quote), whitespace around elements dropped. ``''`` is the empty list."""
    elements = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            if elements:
                raise InvalidValue('empty element at the end of list %r' % text)
            return elements
        if text[i] == '"':
            buf = []
            i += 1
            while True:
                if i >= n:
                    raise InvalidValue('unterminated double quote in list %r' % text)
                if text[i] == '"':
                    if text[i + 1:i + 2] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            element = ''.join(buf)
            while i < n and text[i].isspace():
                i += 1
        else:
            start = i
            while i < n and text[i] != ',':
                i += 1
            element = text[start:i].strip()
        if element == '':
            raise InvalidValue('empty element in list %r' % text)
        elements.append(element)
        if i >= n:
            return elements
        if text[i] != ',':
            raise InvalidValue('expected a comma after %r in list %r' % (element, text))
        i += 1


def unquote_conf(text):
    """A value written postgresql.conf-style in single quotes (``"'*'"``) -> its content."""
    inner = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "'" and "'" not in inner.replace("''", ''):
        return inner.replace("''", "'")
    return text


def quote_element(element):
    """A list element as ALTER SYSTEM writes it (quote_identifier(): quoted unless it is a
    plain lower-case name)."""
    if re.match(r'^[a-z_][a-z0-9_$]*$', element):
        return element
    return '"%s"' % element.replace('"', '""')


def _as_text(value):
    if isinstance(value, bool):
        return 'on' if value else 'off'
    return unquote_conf(str(value))


# ---- desired values -------------------------------------------------------------------------

class DesiredValue(object):
    """A desired value for a setting: ``literals`` to send with ALTER SYSTEM SET, its
    ``canonical`` form to compare, and the ``text`` shown in diffs. ``reset`` (value null):
    ALTER SYSTEM RESET, back to postgresql.conf or the default."""

    __slots__ = ('literals', 'canonical', 'text', 'reset')

    def __init__(self, literals=(), canonical=None, text=None, reset=False):
        self.literals = tuple(literals)
        self.canonical = canonical
        self.text = text
        self.reset = reset


def canonical(setting, text):
    """Comparable form of a value given as text (desired, configured or running).
    Raises InvalidValue."""
    if setting.vartype == 'bool':
        value = parse_bool(text)
        if value is None:
            raise InvalidValue('invalid value for boolean setting %s: %r (use on/off)'
                               % (setting.name, text))
        return value
    if setting.vartype in ('integer', 'real'):
        value = parse_number(setting, text)
        return value if setting.vartype == 'integer' else '%g' % value
    if setting.vartype == 'enum':
        return _enum_value(setting, text).lower()
    if setting.key in ASPECT_SETTINGS:
        return _aspects(setting, text)
    fold = (lambda s: s.lower()) if setting.key in CASE_INSENSITIVE_SETTINGS else (lambda s: s)
    if setting.key in LIST_SETTINGS:
        return tuple(fold(e) for e in split_list(text))
    return fold(text)


def _aspects(setting, text):
    """An aspect-list setting's value as the set of aspects it turns on."""
    known = ASPECT_SETTINGS[setting.key]
    as_bool = parse_bool(text)
    if as_bool is not None:
        return frozenset(known['on'] if as_bool else ())
    aspects = set()
    for element in split_list(text):
        element = element.lower()
        aspects.update(known['all'] if element == 'all' else (element,))
    return frozenset(aspects)


def _list_literals(setting, raw):
    elements = raw if isinstance(raw, (list, tuple)) else split_list(_as_text(raw))
    elements = [_as_text(e) for e in elements]
    if not elements and setting.key in LIST_QUOTE_SETTINGS:
        raise InvalidValue('an empty list for setting %s would be written as \'""\' by ALTER '
                           'SYSTEM; use null to remove the ALTER SYSTEM entry instead'
                           % setting.name)
    if setting.key in LIST_QUOTE_SETTINGS:
        return elements
    return [', '.join(elements)]


def desired_value(setting, raw):
    """Validate a desired value against the setting's type, unit, range and choices."""
    if raw is None:
        return DesiredValue(reset=True, text=None)
    if setting.key in LIST_SETTINGS:
        literals = _list_literals(setting, raw)
        text = ', '.join(quote_element(e) for e in literals) \
            if setting.key in LIST_QUOTE_SETTINGS else literals[0]
        return DesiredValue(literals, canonical(setting, text), text)
    if isinstance(raw, (list, tuple, dict)):
        raise InvalidValue('setting %s takes a single value, not %r' % (setting.name, raw))
    text = _as_text(raw)
    value = canonical(setting, text)
    if setting.vartype in ('integer', 'real'):
        _check_range(setting, float(value), text)
    elif setting.vartype == 'bool':
        text = 'on' if value else 'off'
    elif setting.vartype == 'enum':
        text = _enum_value(setting, text)
    return DesiredValue([text], value, text)


def same_value(setting, desired, text):
    """Whether ``text`` (a value the server has) equals the desired value."""
    if text is None:
        return False
    try:
        return canonical(setting, text) == desired.canonical
    except InvalidValue:
        return False


# ---- restart ------------------------------------------------------------------------------------

def waits_for_restart(setting):
    """The server reports it (pending_restart), or a postmaster setting is configured to a value
    other than the running one (e.g. ALTER SYSTEM without a reload). Only for types compared
    exactly, so a string canonicalised by the server never claims a restart."""
    if setting.pending_restart:
        return True
    if setting.context != 'postmaster' or setting.configured is None \
            or setting.vartype == 'string':
        return False
    try:
        return canonical(setting, setting.configured) != canonical(setting, setting.setting)
    except InvalidValue:
        return False


# ---- statements ---------------------------------------------------------------------------------

def _name(setting):
    return sql.Identifier(*setting.name.split('.'))


def set_statement(setting, literals):
    values = sql.SQL(', ').join([sql.Placeholder()] * len(literals))
    return Statement(sql.SQL('ALTER SYSTEM SET {} = {}').format(_name(setting), values),
                     literals, autocommit=True)


def reset_statement(setting):
    return Statement(sql.SQL('ALTER SYSTEM RESET {}').format(_name(setting)), autocommit=True)


RELOAD = 'SELECT pg_catalog.pg_reload_conf()'


def reload_statement():
    return Statement(sql.SQL(RELOAD))


def restore_statement(setting):
    """Undo an ALTER SYSTEM on this setting: its postgresql.auto.conf entry as it was."""
    if setting.in_auto_conf and setting.configured is not None:
        literals = split_list(setting.configured) if setting.key in LIST_QUOTE_SETTINGS \
            else [setting.configured]
        return set_statement(setting, literals)
    return reset_statement(setting)


# ---- the plan -----------------------------------------------------------------------------------

class SettingChange(object):
    """ALTER SYSTEM for one setting, and the statement that undoes it."""

    __slots__ = ('key', 'setting', 'desired', 'statement', 'restore')

    def __init__(self, key, setting, desired):
        self.key = key
        self.setting = setting
        self.desired = desired
        self.statement = reset_statement(setting) if desired.reset \
            else set_statement(setting, desired.literals)
        self.restore = restore_statement(setting)

    @property
    def after_display(self):
        if self.desired.reset:
            return self.setting.fallback if self.setting.fallback is not None \
                else self.setting.boot_val
        return self.desired.text

    @property
    def predicts_restart(self):
        """A postmaster setting that will differ from its running value."""
        if self.setting.context != 'postmaster':
            return False
        if self.desired.reset:
            return not _text_equal(self.setting, self.after_display, self.setting.setting)
        return not same_value(self.setting, self.desired, self.setting.setting)


def _text_equal(setting, a, b):
    try:
        return canonical(setting, a) == canonical(setting, b)
    except InvalidValue:
        return a == b


class SettingsPlan(object):
    """Changes for the managed settings; ``reload`` when a configured value is not yet in
    effect although nothing needs writing."""

    def __init__(self, current, changes, reload_needed):
        self.current = current
        self.changes = changes
        self.reload_needed = reload_needed or bool(changes)

    @property
    def alter_statements(self):
        return [c.statement for c in self.changes]

    @property
    def statements(self):
        return self.alter_statements + ([reload_statement()] if self.reload_needed else [])

    def predicted(self):
        """(display values, names waiting for a restart) once the plan is applied."""
        changed = dict((c.key, c) for c in self.changes)
        values, restart = {}, []
        for key, setting in self.current.items():
            change = changed.get(key)
            values[key] = change.after_display if change else setting.display
            if (change.predicts_restart if change else waits_for_restart(setting)):
                restart.append(key)
        return values, restart


def _needs_reload(setting, desired):
    """Configured as desired, but a reloadable running value still differs (files edited
    without a reload). Strings are left out: the server may canonicalise them."""
    return (not desired.reset and setting.configured is not None
            and setting.vartype != 'string'
            and setting.context not in ('postmaster', 'internal')
            and setting.source in SERVER_SOURCES
            and not same_value(setting, desired, setting.setting))


def _in_sync(setting, desired, files_readable, at_least=False):
    if desired.reset:
        return files_readable and not setting.in_auto_conf
    if at_least and setting.server_value is not None:
        try:
            return canonical(setting, setting.server_value) >= desired.canonical
        except InvalidValue:
            return False
    return same_value(setting, desired, setting.server_value)


def check_names(desired):
    """Problems with the setting names themselves (unknown names are checked later)."""
    seen, problems = {}, []
    for key in desired:
        lowered = key.lower()
        if lowered in seen:
            problems.append('Setting %s is given twice (as %s and %s); names are '
                            'case-insensitive.' % (key, seen[lowered], key))
        seen[lowered] = key
    return problems


def _sentence(text):
    text = text.rstrip('.')
    return text[:1].upper() + text[1:] + '.'


def plan_settings(desired, current, files_readable=True, at_least=()):
    """Plan ALTER SYSTEM statements.

    ``desired``: dict setting name -> value as written in the task (None: RESET).
    ``current``: dict setting name (the same keys) -> Setting, or None for an unknown name.
    ``at_least``: names of integer settings whose desired value is a lower bound: a value the
    server has (or is configured to) at or above it is kept.
    Raises SettingsError naming every unknown setting and every invalid value.
    """
    problems = check_names(desired)
    unknown = sorted(k for k in desired if current.get(k) is None)
    if unknown:
        problems.append('Unknown setting%s: %s.' % ('s' if len(unknown) > 1 else '',
                                                    ', '.join(unknown)))
    values = {}
    for key in desired:
        setting = current.get(key)
        if setting is None:
            continue
        try:
            values[key] = _validated(setting, desired[key])
        except InvalidValue as e:
            problems.append(_sentence(str(e)))
    if problems:
        raise SettingsError(problems)
    lower_bounds = set(k.lower() for k in at_least)
    problems = ['Setting %s cannot be a lower bound (at_least): it is not an integer.' % key
                for key in desired if key.lower() in lower_bounds
                and current[key].vartype != 'integer']
    if problems:
        raise SettingsError(problems)
    changes = [SettingChange(key, current[key], values[key]) for key in desired
               if not _in_sync(current[key], values[key], files_readable,
                               key.lower() in lower_bounds)]
    # Strings first: only the server can validate them, and when it refuses the first one
    # nothing has been written yet.
    changes.sort(key=lambda change: change.setting.vartype != 'string')
    reload_needed = any(_needs_reload(current[k], values[k]) for k in desired)
    return SettingsPlan(dict((k, current[k]) for k in desired), changes, reload_needed)


def _validated(setting, raw):
    if setting.context == 'internal':
        raise InvalidValue('setting %s cannot be changed (it is fixed when the cluster is '
                           'built or computed by the server)' % setting.name)
    if setting.key in NOT_IN_AUTO_CONF:
        raise InvalidValue('setting %s cannot be changed with ALTER SYSTEM; set it in '
                           'postgresql.conf or on the server command line' % setting.name)
    return desired_value(setting, raw)


# ---- the read ------------------------------------------------------------------------------------

# pg_settings joined with the last configuration file entry of each setting. {files} is the
# pg_file_settings rows, or an empty set when login_user may not read them.
SETTINGS_QUERY = '''
WITH wanted AS (
    SELECT w.name, w.ord FROM unnest(%(names)s::text[]) WITH ORDINALITY AS w(name, ord)
), files AS (
    {files}
), configured AS (
    SELECT DISTINCT ON (lower(f.name)) lower(f.name) AS key, f.setting, f.auto_conf
    FROM files f ORDER BY lower(f.name), f.seqno DESC
), fallback AS (
    SELECT DISTINCT ON (lower(f.name)) lower(f.name) AS key, f.setting
    FROM files f WHERE NOT f.auto_conf ORDER BY lower(f.name), f.seqno DESC
)
SELECT w.name AS key, s.name, s.setting, s.unit, s.vartype, s.context, s.enumvals,
       s.min_val, s.max_val, s.boot_val, s.source, s.pending_restart,
       CASE WHEN s.name IS NOT NULL THEN pg_catalog.current_setting(s.name) END AS shown,
       c.setting AS configured, coalesce(c.auto_conf, false) AS in_auto_conf,
       fb.setting AS fallback, pg_catalog.pg_conf_load_time() AS conf_load_time
FROM wanted w
LEFT JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(w.name)
LEFT JOIN configured c ON c.key = lower(s.name)
LEFT JOIN fallback fb ON fb.key = lower(s.name)
ORDER BY w.ord
'''
FILES = '''
    SELECT f.name, f.setting, f.seqno,
           f.sourcefile = pg_catalog.current_setting('data_directory')
                          || '/postgresql.auto.conf' AS auto_conf
    FROM pg_catalog.pg_file_settings f WHERE f.name IS NOT NULL
'''
NO_FILES = '''
    SELECT NULL::text AS name, NULL::text AS setting, NULL::int AS seqno,
           NULL::boolean AS auto_conf WHERE false
'''


def psql_settings_query(variable):
    """SETTINGS_QUERY for psql (the postgresql_server role's discovery, one remote call): the
    names come from the psql variable ``variable`` (comma-separated: no setting name has a
    comma; quoted by psql's ``:'variable'``), the configuration files are read. The rows are
    the module's."""
    return (SETTINGS_QUERY.replace('%(names)s::text[]',
                                   "pg_catalog.string_to_array(:'%s', ',')" % variable)
            .replace('{files}', FILES.strip()))


def settings_in_sync(desired, rows, files_readable=True, at_least=()):
    """True when pg_settings would change nothing: every name in ``desired`` was read
    (``rows``: SETTINGS_QUERY's rows as dicts, with ``key``), the plan has no statement and no
    reload, no managed setting waits for a restart and none is set on the command line (the
    module warns about that). False whenever in doubt, so the module is called and decides."""
    if rows is None or not desired:
        return False
    current = {}
    for row in rows:
        setting = Setting.from_row(row)
        if row.get('key') is not None and setting is not None:
            current[row['key']] = setting
    if any(key not in current for key in desired):
        return False
    if not files_readable:
        return False
    try:
        plan = plan_settings(desired, current, files_readable, at_least)
    except SettingsError:
        return False
    if plan.changes or plan.reload_needed:
        return False
    return not any(waits_for_restart(s) or s.source == 'command line'
                   for s in plan.current.values())
