# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The last apply error of each subscription, from the subscriber's server log (pure parsing).

PostgreSQL counts apply errors (``pg_stat_subscription_stats``, 15+) but keeps their text only
in the server log. From PostgreSQL 15 an apply error carries a ``CONTEXT`` line naming the
subscription's replication origin (``pg_<subscription oid>``), the message type, the target
relation, the remote transaction and its finish LSN - the LSN ``ALTER SUBSCRIPTION ... SKIP``
takes::

    2026-01-05 10:00:00.123 UTC [4242] ERROR:  duplicate key value violates unique constraint "orders_pkey"
    2026-01-05 10:00:00.123 UTC [4242] DETAIL:  Key (id)=(5) already exists.
    2026-01-05 10:00:00.123 UTC [4242] CONTEXT:  processing remote data for replication origin "pg_16399"
        during message type "INSERT" for replication target relation "sales.orders" in transaction 745,
        finished at 0/1A2B3C4

Only the plain-text (``stderr``) log format is read; the lines of one message share their
``log_line_prefix`` text, which ties the ``ERROR`` and ``DETAIL`` lines to the ``CONTEXT``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

# how much of the end of the log is read
TAIL_BYTES = 4 * 1024 * 1024

_CONTEXT_RE = re.compile(
    r'CONTEXT:  processing remote data for replication origin "(?P<origin>[^"]+)" during '
    r'message type "(?P<type>[^"]+)"(?: for replication target relation "(?P<relation>[^"]+)"'
    r'(?: column "(?P<column>[^"]+)")?)?(?: in transaction (?P<xid>\d+))?'
    r'(?:, finished at (?P<lsn>[0-9A-Fa-f]+/[0-9A-Fa-f]+))?')
_TIME_RE = re.compile(r'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9+:-]+)?)')
_CLUSTER_RE = re.compile(r'^(\d+)/([A-Za-z0-9_.-]+)$')
# lines of one message written before its CONTEXT line that are searched for ERROR/DETAIL
_LOOKBACK = 30
_CONFLICT_RE = re.compile(r'conflict=([a-z_]+)')
# parts of a PostgreSQL 18 conflict DETAIL that hold whole rows: left out, the keys are kept
_ROW_PARTS = ('existing local row', 'remote row', 'Remote row', 'existing local tuple', 'remote tuple')


def _without_rows(text):
    """A DETAIL line without the row values PostgreSQL 18 prints (the key stays)."""
    parts = [p for p in text.rstrip('.').split('; ') if not p.startswith(_ROW_PARTS)]
    return '; '.join(parts)


def log_file(explicit, settings, current_logfile):
    """Path of the server log to read, or None when it cannot be found.

    ``explicit``: a path, or ``auto``. ``settings``: ``pg_settings`` values (``data_directory``,
    ``cluster_name``, ``logging_collector``). ``current_logfile``: ``pg_current_logfile()``.
    With the logging collector, its current file; otherwise Debian's ``pg_ctlcluster`` log
    (``/var/log/postgresql/postgresql-<version>-<cluster>.log``, found from ``cluster_name``).
    """
    if explicit and explicit != 'auto':
        return explicit
    if current_logfile:
        if os.path.isabs(current_logfile):
            return current_logfile
        if settings.get('data_directory'):
            return os.path.join(settings['data_directory'], current_logfile)
        return None
    match = _CLUSTER_RE.match(settings.get('cluster_name') or '')
    if settings.get('logging_collector') != 'on' and match:
        return '/var/log/postgresql/postgresql-%s-%s.log' % match.groups()
    return None


def read_tail(path, size=TAIL_BYTES):
    """The last ``size`` bytes of a file as lines (a first partial line dropped)."""
    with open(path, 'rb') as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        start = max(0, end - size)
        handle.seek(start)
        data = handle.read()
    lines = data.decode('utf-8', 'replace').splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines


def last_apply_errors(lines, origins):
    """{origin: error} for the origins (``pg_<oid>``) whose apply errors the lines hold, the
    last one of each: ``time``, ``message``, ``detail``, ``message_type``, ``relation``,
    ``column``, ``transaction``, ``finish_lsn``."""
    wanted = set(origins)
    found = {}
    for index, line in enumerate(lines):
        at = line.find('CONTEXT:  processing remote data for replication origin')
        if at < 0:
            continue
        match = _CONTEXT_RE.match(line, at)
        if not match or match.group('origin') not in wanted:
            continue
        prefix = line[:at]
        message = detail = None
        continued = []
        for earlier in reversed(lines[max(0, index - _LOOKBACK):index]):
            if earlier.startswith('\t'):
                continued.insert(0, earlier[1:])  # a message's next line (PostgreSQL 18 DETAIL)
                continue
            if not earlier.startswith(prefix):
                continued = []
                continue  # another process's line in between
            label, _sep, text = earlier[len(prefix):].partition(':  ')
            if label == 'DETAIL':
                detail = '\n'.join([text] + [_without_rows(c) for c in continued])
                continued = []
            elif label == 'ERROR':
                message = text
                break
            elif label != 'HINT':
                break  # the CONTEXT belongs to a message of another severity
        if message is None:
            continue  # a CONTEXT of a LOG or WARNING line, not an error
        time_match = _TIME_RE.search(prefix)
        xid = match.group('xid')
        conflict = _CONFLICT_RE.search(message)
        found[match.group('origin')] = {
            'time': time_match.group(1) if time_match else None,
            'message': message,
            # PostgreSQL 18 names the conflict: insert_exists, update_missing, ...
            'conflict': conflict.group(1) if conflict else None,
            'detail': detail,
            'message_type': match.group('type'),
            'relation': match.group('relation'),
            'column': match.group('column'),
            'transaction': int(xid) if xid else None,
            'finish_lsn': match.group('lsn').upper() if match.group('lsn') else None,
        }
    return found


def lsn_value(text):
    if not text:
        return None
    high, _sep, low = text.partition('/')
    return (int(high, 16) << 32) | int(low, 16)


def resolved(error, origin_lsn):
    """Whether the subscription has since applied (or skipped) past the failed transaction:
    its origin's ``remote_lsn`` is at or beyond the finish LSN. None when unknown."""
    if error.get('finish_lsn') is None or origin_lsn is None:
        return None
    return lsn_value(origin_lsn) >= lsn_value(error['finish_lsn'])
