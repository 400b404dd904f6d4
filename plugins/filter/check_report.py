# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check playbook's logic (``playbooks/check.yml``): what to read where, one report row per
sync set and target, and the thresholds.

Pure functions (no I/O), used as filters:

- ``check_databases(sets, host)`` -> the databases of ``host`` that take part in present sync
  sets, each with the pg_sync_info sections to read there;
- ``check_compare_items(sets, host, hostvars)`` -> the pg_table_compare calls ``host`` runs as a
  target (one per set and target database, the source reached like the subscription does);
- ``check_report(sets, hostvars, thresholds)`` -> ``{rows, table, breaches, ok}`` from the
  results the check playbook registered on each host (``tablesync_check_info``: pg_sync_info
  loop results with ``item.database``; ``tablesync_check_compare``: pg_table_compare loop results
  with ``item.set``/``item.database``);
- ``check_thresholds(thresholds)`` -> the thresholds with defaults, validated.

Object names are those the roles create (see the sync_model role): publication and subscription
``tablesync_<set>``, slot ``tablesync_<set>_<8 hex>``; trigger sync sets keep the set's name
(pg_sync_trigger's ``name``), their foreign server is ``tablesync_<set>``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping

from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import (
    invalidation_cause, lost_slot_status)
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import (
    IMPLEMENTED_METHODS, PREFIX, PUBLISH, set_links, sync_hosts)

# name -> (default, kind): 'number' (None disables) or 'bool'
THRESHOLDS = {
    'max_lag_bytes': (1024 ** 3, 'number'),
    'max_lag_seconds': (300, 'number'),
    'disabled_subscription': (True, 'bool'),
    'inactive_slot': (True, 'bool'),
    'worker_not_running': (True, 'bool'),
    'max_apply_errors': (0, 'number'),
    'max_sync_errors': (0, 'number'),
    # PostgreSQL 18+ counts the conflicts the apply worker met (update_missing, ...)
    'max_conflicts': (0, 'number'),
    'max_retained_bytes': (None, 'number'),
    'max_queue_age_seconds': (300, 'number'),
    'max_queue_depth': (None, 'number'),
    'max_mismatching_rows': (0, 'number'),
    # a target table whose columns differ from its source's (column changes followed by
    # pg_schema_follow), or a trigger set's column change the flush has not applied
    'schema_drift': (True, 'bool'),
}

SOURCE_SECTIONS = ['publications', 'slots', 'trigger_queues', 'schema_changes']
TARGET_SECTIONS = ['subscriptions', 'fdw_servers', 'schema_changes']
# method -> the side of a set that runs its comparison
COMPARED_FROM = {'target': 'logical', 'source': 'trigger'}
COLUMNS = (('set', 'SET'), ('method', 'METHOD'), ('source', 'SOURCE'), ('target', 'TARGET'),
           ('state', 'STATE'), ('lag_bytes', 'LAG BYTES'), ('lag_seconds', 'LAG S'),
           ('errors', 'ERRORS'), ('schema', 'SCHEMA'), ('verify', 'VERIFY'))
INFO_VAR = 'tablesync_check_info'
COMPARE_VAR = 'tablesync_check_compare'
COMPARE_TRIGGER_VAR = 'tablesync_check_compare_trigger'


def check_thresholds(thresholds=None):
    """Thresholds with their defaults; refuses unknown names and wrong types (naming all)."""
    thresholds = thresholds or {}
    if not isinstance(thresholds, Mapping):
        raise AnsibleFilterError('tablesync_check_thresholds must be a dict, got %r' % (thresholds,))
    errors = []
    unknown = sorted(set(thresholds) - set(THRESHOLDS))
    if unknown:
        errors.append('unknown thresholds %s (known: %s)'
                      % (', '.join(unknown), ', '.join(sorted(THRESHOLDS))))
    out = {}
    for name, (default, kind) in THRESHOLDS.items():
        value = thresholds.get(name, default)
        if kind == 'bool':
            if not isinstance(value, bool):
                errors.append('%s must be true or false, got %r' % (name, value))
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or value < 0):
            errors.append('%s must be a number >= 0 or null (not checked), got %r' % (name, value))
        out[name] = value
    if errors:
        raise AnsibleFilterError('tablesync_check_thresholds: ' + '; '.join(errors))
    return out


def _sets(sets):
    """Present sets, with defaults (the model is validated by sync_model_errors beforehand)."""
    out = []
    for item in sets or []:
        if not isinstance(item, Mapping) or item.get('state', 'present') != 'present':
            continue
        out.append({
            'name': item['name'],
            'method': item.get('method', 'logical'),
            'source': item['source'],
            'targets': list(item.get('targets') or []),
            'tables': list(item.get('tables') or []),
            'publish': list(item.get('publish') or PUBLISH),
            'bidirectional': bool(item.get('bidirectional')),
        })
    return out


def _links(item):
    """The report rows of a set: a logical set's subscriptions (both ways for a bidirectional
    set, ``set_links``), else one per target."""
    if item['method'] == 'logical':
        return set_links(item)
    return [{'publisher': item['source'], 'subscriber': target, 'phase': 'forward'}
            for target in item['targets']]


def check_databases(sets, host):
    """``[{database, gather}]``: the databases ``host`` holds in present sets, with the sections
    of pg_sync_info to read (source side: publications, slots, trigger queues; target side:
    subscriptions, foreign servers)."""
    wanted = {}
    for item in _sets(sets):
        for link in _links(item):
            if link['publisher']['host'] == host:
                wanted.setdefault(link['publisher']['database'], set()).update(SOURCE_SECTIONS)
            if link['subscriber']['host'] == host:
                wanted.setdefault(link['subscriber']['database'], set()).update(TARGET_SECTIONS)
    order = SOURCE_SECTIONS + [s for s in TARGET_SECTIONS if s not in SOURCE_SECTIONS]
    return [{'database': db, 'gather': [s for s in order if s in sections]}
            for db, sections in sorted(wanted.items())]


def check_compare_items(sets, host, hostvars=None, side='target', keys=None):
    """The pg_table_compare calls ``host`` runs, each ``{set, method, database (the target
    database), source_database, source: {host, port, dbname}, target: {host, port}, tables}``.

    The comparison runs where the sync's own connection starts, through the access the roles
    opened for it: ``side='target'``: the logical sets ``host`` is a target of (it reaches the
    source as the subscription does, as the replication role); ``side='source'``: the trigger
    sets ``host`` is the source of (it reaches each target as the triggers do, as the trigger
    role). Addresses and ports as the roles use them (``tablesync_address`` / ``ansible_host``
    / gathered facts, ``tablesync_port``). ``keys``: ``{table: [columns]}``, the key to compare
    a table by when it has no primary key or replica identity index (pg_table_compare's
    ``key``)."""
    hostvars = hostvars or {}
    keys = keys or {}
    if not isinstance(keys, Mapping):
        raise AnsibleFilterError('check_compare_items: keys must be a dict of table -> key columns')
    out = []
    for item in _sets(sets):
        if item['method'] != COMPARED_FROM[side]:
            continue
        for target in item['targets']:
            if host != (target['host'] if side == 'target' else item['source']['host']):
                continue
            source = item['source']['host']
            where = sync_hosts(hostvars, [source, target['host']])
            out.append({
                'set': item['name'],
                'method': item['method'],
                'database': target['database'],
                'source_database': item['source']['database'],
                'source': {'host': where[source]['address'] or source,
                           'port': where[source]['port'], 'dbname': item['source']['database']},
                'target': {'host': where[target['host']]['address'] or target['host'],
                           'port': where[target['host']]['port']},
                'tables': [_compare_table(t, keys) for t in item['tables']],
            })
    return out


def _compare_table(entry, keys=None):
    """A set's table entry as pg_table_compare takes it: a row filter applies to the source only
    (the target holds exactly the filtered rows and may lack the filter's columns); the key
    given in ``keys`` for a table without primary key or replica identity index."""
    name = entry.get('name') if isinstance(entry, Mapping) else entry
    if keys and name in keys:
        entry = dict(entry) if isinstance(entry, Mapping) else {'name': entry}
        entry['key'] = list(keys[name])
    if isinstance(entry, Mapping) and entry.get('where') is not None:
        entry = dict(entry)
        entry['target_where'] = ''
    return entry


def _registered(hostvars, host, var):
    """Loop results registered on host: ({database or set/database: result}, problem or None)."""
    try:
        hv = hostvars[host]
    except KeyError:
        return None, 'host %s was not part of this run' % host
    registered = hv.get(var) if isinstance(hv, Mapping) else None
    if registered is None:
        return None, 'no result from %s (not part of this run?)' % host
    if registered.get('unreachable'):
        return None, 'host %s is unreachable: %s' % (host, registered.get('msg', ''))
    return registered.get('results') or [], None


def _info(hostvars, host, database):
    """pg_sync_info result for host/database, or (None, why)."""
    results, problem = _registered(hostvars, host, INFO_VAR)
    if problem:
        return None, problem
    for result in results:
        item = result.get('item') or {}
        if item.get('database') != database:
            continue
        if result.get('unreachable'):
            return None, 'host %s is unreachable: %s' % (host, result.get('msg', ''))
        if result.get('failed') or result.get('skipped'):
            return None, 'cannot read %s/%s: %s' % (host, database,
                                                    (result.get('msg') or 'failed').strip())
        return result, None
    return None, 'no result for database %s on %s' % (database, host)


def _by(items, key='name'):
    return dict((i.get(key), i) for i in items or [] if isinstance(i, Mapping))


def _fmt_number(value, digits=0):
    if value is None:
        return '-'
    if digits:
        return '%.*f' % (digits, value)
    return str(int(value))


def _new_row(item, target, source=None):
    source = source or item['source']
    return {
        'set': item['name'],
        'method': item['method'],
        'source': '%s/%s' % (source['host'], source['database']),
        'target': '%s/%s' % (target['host'], target['database']),
        'state': None,
        'lag_bytes': None,
        'lag_seconds': None,
        'apply_errors': None,
        'sync_errors': None,
        'conflicts': None,
        'errors': None,
        'schema': None,
        'schema_drift': [],
        'verify': None,
        'mismatching_rows': None,
        'notes': [],
        'breaches': [],
    }


def _over(value, limit):
    return limit is not None and value is not None and value > limit


def _logical_row(row, item, link, hostvars, t):
    label = 'sync set %s, %s -> %s' % (item['name'], row['source'], row['target'])
    subscription_name = link['subscription']
    slot_key = link['slot']
    target, source = link['subscriber'], link['publisher']
    sub_info, sub_problem = _info(hostvars, target['host'], target['database'])
    pub_info, pub_problem = _info(hostvars, source['host'], source['database'])
    for problem in (sub_problem, pub_problem):
        if problem:
            row['breaches'].append('%s: %s' % (label, problem))
    sub = _by((sub_info or {}).get('subscriptions')).get(subscription_name) if sub_info else None
    slot = _by((pub_info or {}).get('slots'), 'slot_name').get(slot_key) if pub_info else None

    state = 'unreadable' if sub_info is None else 'missing'
    if sub is not None:
        row['apply_errors'] = sub.get('apply_error_count')
        row['sync_errors'] = sub.get('sync_error_count')
        counts = dict((k, v) for k, v in (sub.get('conflicts') or {}).items() if v)
        if sub.get('conflicts') is not None:
            row['conflicts'] = sum(counts.values())
        row['lag_seconds'] = sub.get('lag_seconds')
        row['lag_bytes'] = sub.get('lag_bytes')
        tables = sub.get('tables') or []
        waiting = [tb for tb in tables if tb.get('state') != 'ready']
        if not sub.get('enabled'):
            state = 'disabled'
            if t['disabled_subscription']:
                row['breaches'].append('%s: subscription %s is disabled' % (label, subscription_name))
        elif sub.get('worker_running') is False:
            state = 'failing'
            if t['worker_not_running']:
                row['breaches'].append('%s: the apply worker of subscription %s is not running'
                                       % (label, subscription_name))
        elif waiting:
            state = 'syncing'
            row['notes'].append('%d of %d tables not ready' % (len(waiting), len(tables)))
        else:
            state = 'streaming'
        if _over(row['apply_errors'], t['max_apply_errors']):
            row['breaches'].append('%s: %d apply errors (threshold %s; counted since the last '
                                   'pg_stat_reset_subscription_stats)'
                                   % (label, row['apply_errors'], t['max_apply_errors']))
        if _over(row['sync_errors'], t['max_sync_errors']):
            row['breaches'].append('%s: %d table sync errors (threshold %s)'
                                   % (label, row['sync_errors'], t['max_sync_errors']))
        if _over(row['conflicts'], t['max_conflicts']):
            why = ('rows written on two peers: verify and repair, docs/bidirectional.md'
                   if item.get('bidirectional') else
                   'the target differed from the source: verify and repair, docs/faults.md')
            row['breaches'].append('%s: %d conflicts (%s; threshold %s; %s)'
                                   % (label, row['conflicts'], ', '.join(
                                       '%s %d' % kv for kv in sorted(counts.items())), t['max_conflicts'], why))
    elif sub_info is not None:
        row['breaches'].append('%s: subscription %s does not exist in %s'
                               % (label, subscription_name, row['target']))
    if pub_info is not None:
        if slot is None:
            row['breaches'].append('%s: replication slot %s does not exist on %s'
                                   % (label, slot_key, source['host']))
        else:
            # the publisher's view of the lag wins: it counts what the subscriber has not confirmed
            if slot.get('lag_bytes') is not None:
                row['lag_bytes'] = slot['lag_bytes']
            if row['lag_seconds'] is None and slot.get('replay_lag_seconds') is not None:
                row['lag_seconds'] = slot['replay_lag_seconds']
            if slot.get('active') is False and t['inactive_slot']:
                row['breaches'].append('%s: replication slot %s is not active'
                                       % (label, slot_key))
            if lost_slot_status(slot) == 'lost':
                row['breaches'].append('%s: replication slot %s was invalidated (%s); the '
                                       'subscription must be recreated (on_lost_slot=rebuild)'
                                       % (label, slot_key, invalidation_cause(slot)))
            if _over(slot.get('retained_bytes'), t['max_retained_bytes']):
                row['breaches'].append('%s: slot %s retains %d bytes of WAL (threshold %s)'
                                       % (label, slot_key, slot['retained_bytes'],
                                          t['max_retained_bytes']))
    row['state'] = state
    if pub_info is not None and sub_info is not None and link['phase'] == 'forward':
        _schema_drift(row, item['name'], pub_info, sub_info, label, t)
    if _over(row['lag_bytes'], t['max_lag_bytes']):
        row['breaches'].append('%s: lag %d bytes (threshold %s)'
                               % (label, row['lag_bytes'], t['max_lag_bytes']))
    if _over(row['lag_seconds'], t['max_lag_seconds']):
        row['breaches'].append('%s: lag %.1f seconds (threshold %s)'
                               % (label, row['lag_seconds'], t['max_lag_seconds']))


def _column_diff(source, target):
    """What a target table's columns lack or have more than its source's ([name, type] pairs)."""
    want = dict(tuple(c) for c in source or [])
    have = dict(tuple(c) for c in target or [])
    out = ['%s missing' % n for n in want if n not in have]
    out += ['%s is %s, not %s' % (n, have[n], want[n]) for n in want if n in have and have[n] != want[n]]
    out += ['%s only on the target' % n for n in have if n not in want]
    return out


def _schema_drift(row, set_name, pub_info, sub_info, label, t):
    """Column changes of a following logical set: applied on the target, and the target's
    tables equal to the source's columns (pg_sync_info section schema_changes, both sides)."""
    source = dict((r.get('table'), r) for r in pub_info.get('schema_changes') or [] if r.get('set') == set_name)
    if not source:
        return  # the set does not follow column changes (or the source cannot tell)
    target = dict((r.get('table'), r) for r in sub_info.get('schema_changes') or [] if r.get('set') == set_name)
    pending, drifted = [], []
    for table, src in sorted(source.items()):
        dst = target.get(table)
        if dst is None or (dst.get('last_change') or 0) < (src.get('last_change') or 0):
            pending.append(table)
            continue
        if dst.get('table_columns') is None:
            continue  # the table is not on this target (yet): the subscription reports it
        diff = _column_diff(src.get('columns'), dst.get('table_columns'))
        if diff:
            drifted.append('%s (%s)' % (table, ', '.join(diff)))
    row['schema_drift'] = drifted
    # one word per cell: the table's lines stay split on whitespace
    row['schema'] = ('drifted:%d' % len(drifted) if drifted else
                     'pending:%d' % len(pending) if pending else 'same')
    if pending:
        row['notes'].append('column changes of %s not applied yet' % ', '.join(pending))
    if drifted and t['schema_drift']:
        row['breaches'].append('%s: target tables differ from the source: %s (docs/schema-changes.md)'
                               % (label, '; '.join(drifted)))


def _trigger_row(row, item, hostvars, t):
    label = 'sync set %s, %s -> %s' % (item['name'], row['source'], row['target'])
    info, problem = _info(hostvars, item['source']['host'], item['source']['database'])
    if problem:
        row['state'] = 'unreadable'
        row['breaches'].append('%s: %s' % (label, problem))
        return
    if 'trigger_queues' in (info.get('unavailable') or []):
        row['state'] = 'unreadable'
        row['breaches'].append('%s: the trigger queue cannot be read (grant SELECT on the schema '
                               'tablesync tables)' % label)
        return
    queue = _by(info.get('trigger_queues')).get(item['name'])
    if queue is None:
        _not_deployed(row, label, 'trigger sync set %s not found in %s' % (item['name'], row['source']))
        return
    row['state'] = queue.get('mode') or 'present'
    row['lag_seconds'] = queue.get('oldest_entry_age_seconds')
    row['notes'].append('%s changes queued' % queue.get('depth'))
    pending = queue.get('schema_changes_pending')
    if pending is not None:
        row['schema'] = 'pending:%d' % pending if pending else 'same'
        if pending and queue.get('last_error') and t['schema_drift']:
            row['breaches'].append('%s: %d column change(s) of the source wait for the flush, which '
                                   'fails (below)' % (label, pending))
    if _over(queue.get('oldest_entry_age_seconds'), t['max_queue_age_seconds']):
        row['breaches'].append('%s: the oldest queued change is %.1f seconds old (threshold %s)'
                               % (label, queue['oldest_entry_age_seconds'],
                                  t['max_queue_age_seconds']))
    if _over(queue.get('depth'), t['max_queue_depth']):
        row['breaches'].append('%s: %d changes queued (threshold %s)'
                               % (label, queue['depth'], t['max_queue_depth']))
    if queue.get('last_error'):
        row['breaches'].append('%s: the flush fails at change %s and retries (%s errors so far): %s'
                               % (label, queue.get('failed_change'), queue.get('flush_errors'),
                                  queue['last_error']))


def _fdw_row(row, item, target, hostvars):
    label = 'sync set %s, %s -> %s' % (item['name'], row['source'], row['target'])
    info, problem = _info(hostvars, target['host'], target['database'])
    if problem:
        row['state'] = 'unreadable'
        row['breaches'].append('%s: %s' % (label, problem))
        return
    server = _by(info.get('fdw_servers')).get(PREFIX + item['name'])
    if server is None:
        _not_deployed(row, label, 'foreign server %s%s not found in %s'
                      % (PREFIX, item['name'], row['target']))
        return
    row['state'] = 'present'
    row['notes'].append('server %s (%s)' % (server.get('name'), server.get('wrapper')))


def _not_deployed(row, label, what):
    if row['method'] in IMPLEMENTED_METHODS:
        row['state'] = 'missing'
        row['breaches'].append('%s: %s' % (label, what))
    else:
        # the roles of this version do not deploy this method: reported, not a breach
        row['state'] = 'not deployed'
        row['notes'].append(what)


def _compare(hostvars, target, item):
    """(mismatching rows or None, text) from the pg_table_compare result of this set/target
    (registered on the target for logical sets, on the source for trigger sets)."""
    if item['method'] == 'trigger':
        results, problem = _registered(hostvars, item['source']['host'], COMPARE_TRIGGER_VAR)
    else:
        results, problem = _registered(hostvars, target['host'], COMPARE_VAR)
    if problem:
        return None, None
    for result in results:
        it = result.get('item') or {}
        if it.get('set') != item['name'] or it.get('database') != target['database']:
            continue
        if result.get('skipped'):
            return None, None
        if result.get('failed') or result.get('unreachable'):
            return None, 'error: %s' % (result.get('msg') or 'failed').strip().splitlines()[0]
        excused = expected_differences(item)
        count, expected, tables = 0, 0, []
        for name, table in sorted((result.get('tables') or {}).items()):
            counts = table.get('counts') or {}
            real = sum(int(counts.get(k) or 0) for k in ('missing', 'extra', 'changed')
                       if k not in excused)
            expected += sum(int(counts.get(k) or 0) for k in excused)
            count += real
            if real:
                tables.append(name)
        if not result.get('equal') and not count and not expected:
            # differing without counts: never report it as equal
            tables = list(result.get('differing_tables') or [])
            count = max(len(tables), 1)
        text = 'equal' if not count else '%d rows differ (%s)' % (count, ', '.join(tables))
        if expected:
            text += ' (+%d expected: %s)' % (expected, excused_reason(item))
        return count, text
    return None, None


def expected_differences(item):
    """The kinds of differences a set's ``publish`` list makes expected on its targets:
    ``extra`` rows without delete or truncate, ``changed`` rows without update, ``missing`` rows
    without insert."""
    publish = set(item.get('publish') or PUBLISH)
    excused = set()
    if 'delete' not in publish or 'truncate' not in publish:
        excused.add('extra')
    if 'update' not in publish:
        excused.add('changed')
    if 'insert' not in publish:
        excused.add('missing')
    return excused


def excused_reason(item):
    missing = [op for op in PUBLISH if op not in (item.get('publish') or PUBLISH)]
    return 'publish lacks %s' % ', '.join(missing)


def check_report(sets, hostvars, thresholds=None):
    """One row per present sync set and target, the table as text lines, every breach."""
    t = check_thresholds(thresholds)
    hostvars = hostvars or {}
    rows = []
    for item in _sets(sets):
        for link in _links(item):
            target = link['subscriber']
            row = _new_row(item, target, link['publisher'])
            if item['method'] == 'logical':
                _logical_row(row, item, link, hostvars, t)
            elif item['method'] == 'trigger':
                _trigger_row(row, item, hostvars, t)
            else:
                _fdw_row(row, item, target, hostvars)
            if row['apply_errors'] is not None or row['sync_errors'] is not None:
                row['errors'] = (row['apply_errors'] or 0) + (row['sync_errors'] or 0)
            # a bidirectional set is verified once per peer, against the source (forward links)
            mismatching, verify = _compare(hostvars, target, item) if link['phase'] == 'forward' \
                else (None, None)
            row['mismatching_rows'] = mismatching
            row['verify'] = verify
            label = 'sync set %s, %s -> %s' % (item['name'], row['source'], row['target'])
            if verify and verify.startswith('error'):
                row['breaches'].append('%s: verification failed: %s' % (label, verify[7:]))
            elif _over(mismatching, t['max_mismatching_rows']):
                row['breaches'].append('%s: verification found %s (threshold %s)'
                                       % (label, verify, t['max_mismatching_rows']))
            rows.append(row)
    breaches = [b for row in rows for b in row['breaches']]
    return {'rows': rows, 'table': format_table(rows), 'breaches': breaches,
            'ok': not breaches, 'thresholds': t}


def _cell(row, key):
    value = row.get(key)
    if key == 'lag_bytes' or key == 'errors':
        return _fmt_number(value)
    if key == 'lag_seconds':
        return _fmt_number(value, 1)
    if value is None:
        return '-'
    return value if isinstance(value, string_types) else str(value)


def format_table(rows):
    """The rows as aligned text lines: a header, one line per row (notes appended), and a
    last line counting the breaches."""
    cells = [[title for _key, title in COLUMNS]]
    for row in rows:
        line = [_cell(row, key) for key, _title in COLUMNS]
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = set(i for i, (key, _t) in enumerate(COLUMNS)
                  if key in ('lag_bytes', 'lag_seconds', 'errors'))
    lines = []
    for n, line in enumerate(cells):
        parts = [line[i].rjust(widths[i]) if i in numeric else line[i].ljust(widths[i])
                 for i in range(len(COLUMNS))]
        text = '  '.join(parts).rstrip()
        if n > 0:
            row = rows[n - 1]
            extra = list(row['notes'])
            if row['breaches']:
                extra.append('%d breach%s' % (len(row['breaches']),
                                              'es' if len(row['breaches']) > 1 else ''))
            if extra:
                text += '  (' + '; '.join(extra) + ')'
        lines.append(text)
    if not rows:
        lines.append('(no present sync sets)')
    return lines


class FilterModule(object):
    def filters(self):
        return {
            'check_databases': check_databases,
            'check_compare_items': check_compare_items,
            'check_report': check_report,
            'check_thresholds': check_thresholds,
        }
