# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sync model: validation of ``tablesync_sync_sets`` and each host's part of it.

Pure functions (no I/O, no Ansible objects needed), used by the roles as filters:

- ``sync_model_errors(sets, inventory_hosts)`` -> list of messages (empty when valid);
- ``sync_hosts(hostvars, hosts)`` -> ``{host: {address, port}}`` from inventory variables/facts;
- ``sync_plan(sets, host, hostvars)`` -> the part of the model one host has to deploy;
- ``replication_settings(plan, ...)`` -> the server settings that part needs;
- ``sync_subscription_status``, ``sync_cleanup``, ``sync_report``: summaries of module
  results for the roles' cleanup and report steps.

Naming (stable, derived from the set name, never typed by users):
publication ``tablesync_<set>`` (in the source database), subscription ``tablesync_<set>``
(in each target database), replication slot ``tablesync_<set>_<8 hex>`` (the hash is of the
target's ``host/database``: one slot per target, unique on the publisher's cluster).
A bidirectional set (``bidirectional: true``, docs/bidirectional.md) is the same on every
peer: each peer publishes ``tablesync_<set>`` and subscribes to every other peer, to the
source as ``tablesync_<set>`` and to any other peer as ``tablesync_<set>_<8 hex of that peer's
host/database>`` (``set_links``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible.module_utils.six import string_types

from ansible.module_utils.six.moves.collections_abc import Mapping

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, parse_qualified, format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_ref
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import (  # noqa: F401 (re-exported to check_report)
    PREFIX, SET_NAME_MAX, SET_NAME_RE, ddl_publication_name, ddl_queue_name, flush_unit, peer_subscription_name,
    publication_name, refresh_unit, server_name, slot_name, subscription_name)

METHODS = ('logical', 'fdw', 'trigger')
IMPLEMENTED_METHODS = ('logical', 'fdw', 'trigger')
STATES = ('present', 'absent')
PUBLISH = ('insert', 'update', 'delete', 'truncate')
SET_KEYS = ('name', 'method', 'state', 'source', 'targets', 'tables', 'publish',
            'replica_identity', 'schema_changes', 'publish_generated_columns', 'schemas',
            'exclude_tables', 'bidirectional')
# logical sets: follow the source's column changes in the stream (and at each run), report
# them only, or fail the run on them (docs/schema-changes.md)
SCHEMA_CHANGES = ('follow', 'report', 'refuse')
TABLE_KEYS = ('name', 'columns', 'where', 'replica_identity')
REPLICA_IDENTITIES = ('default', 'full')
DEFAULT_PORT = 5432


def _is_list(value):
    return is_sequence(value) and not isinstance(value, string_types)


def _set_label(index, raw):
    if isinstance(raw, Mapping) and isinstance(raw.get('name'), string_types) and raw.get('name'):
        return "sync set '%s'" % raw['name']
    return 'sync set #%d' % (index + 1)


def _endpoint_errors(label, what, endpoint, inventory):
    errors = []
    if not isinstance(endpoint, Mapping):
        return ['%s: %s must be a dict with host and database, got %r' % (label, what, endpoint)]
    unknown = sorted(set(endpoint) - set(('host', 'database')))
    if unknown:
        errors.append('%s: %s has unknown keys %s (allowed: host, database)'
                      % (label, what, ', '.join(unknown)))
    host = endpoint.get('host')
    if not isinstance(host, string_types) or not host:
        errors.append('%s: %s.host is required (an inventory hostname)' % (label, what))
    elif inventory is not None and host not in inventory:
        errors.append("%s: %s.host '%s' is not a host of this inventory" % (label, what, host))
    db = endpoint.get('database')
    if not isinstance(db, string_types) or not db:
        errors.append('%s: %s.database is required' % (label, what))
    elif not safe_database_name(db):
        errors.append('%s: %s.database %r is not a usable database name: at most 63 bytes, no '
                      'control characters (such as a newline), double quotes, backslashes or '
                      'percent signs (it is written into pg_hba.conf lines, systemd units and '
                      'SQL files)' % (label, what, db))
    return errors


_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"\\%]')
_HOST_LABEL = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')


def safe_database_name(name):
    """A database name that can be written into config files without escaping problems."""
    return (isinstance(name, string_types) and 0 < len(name.encode('utf-8')) <= 63
            and not _UNSAFE_NAME.search(name))


def valid_address(address):
    """An IP address, a CIDR network or a DNS host name (what a pg_hba.conf line takes)."""
    text = str(address)
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        pass
    if len(text) > 253 or text.endswith('.'):
        return False
    return all(_HOST_LABEL.match(part) for part in text.split('.'))


def _table_entry(label, entry):
    """-> ((schema, table), normalised entry, errors): parsed by ``core.tables`` (the modules'
    parser), the entry given back in the form the modules take (a plain name when it has
    nothing else)."""
    try:
        ref = parse_table_ref(dict(entry) if isinstance(entry, Mapping) else entry, TABLE_KEYS)
    except ValueError as e:
        return None, None, ['%s: %s' % (label, e)]
    if not isinstance(entry, Mapping):
        return ref.key, ref.shown, []
    out = {'name': ref.shown}
    if ref.columns:
        out['columns'] = list(ref.columns)
    if ref.replica_identity is not None:
        out['replica_identity'] = entry['replica_identity']
    errors = []
    if entry.get('where') is not None:
        if ref.where is None:
            errors.append('%s: table %s: where must be a non-empty SQL expression' % (label, ref.shown))
        else:
            out['where'] = entry['where']
    return ref.key, (out if len(out) > 1 else ref.shown), errors


def _parse_set(index, raw, inventory):
    """Validate one set. Returns (normalised set or None, errors)."""
    label = _set_label(index, raw)
    if not isinstance(raw, Mapping):
        return None, ['%s: each sync set must be a dict, got %r' % (label, raw)]
    errors = []
    unknown = sorted(set(raw) - set(SET_KEYS))
    if unknown:
        errors.append('%s: unknown keys %s (allowed: %s)'
                      % (label, ', '.join(unknown), ', '.join(SET_KEYS)))
    name = raw.get('name')
    if not isinstance(name, string_types) or not SET_NAME_RE.match(name or ''):
        errors.append('%s: name %r is not a valid set name: lower-case letters, digits and '
                      '_, starting with a letter (it names the publication, subscriptions '
                      'and slots)' % (label, name))
    elif len(name) > SET_NAME_MAX:
        errors.append("%s: name is %d characters long, at most %d are allowed (PostgreSQL "
                      "names are limited to 63 bytes)" % (label, len(name), SET_NAME_MAX))
    method = raw.get('method', 'logical')
    if method not in METHODS:
        errors.append('%s: unknown method %r (one of: %s)' % (label, method, ', '.join(METHODS)))
    state = raw.get('state', 'present')
    if state not in STATES:
        errors.append('%s: state must be present or absent, got %r' % (label, state))

    errors.extend(_endpoint_errors(label, 'source', raw.get('source'), inventory))
    source = raw.get('source') if isinstance(raw.get('source'), Mapping) else {}

    targets = raw.get('targets')
    norm_targets = []
    if not _is_list(targets) or not targets:
        errors.append('%s: targets must be a non-empty list of {host, database}' % label)
        targets = []
    seen_targets = set()
    for i, target in enumerate(targets):
        what = 'targets[%d]' % i
        t_errors = _endpoint_errors(label, what, target, inventory)
        errors.extend(t_errors)
        if t_errors:
            continue
        key = (target['host'], target['database'])
        if key == (source.get('host'), source.get('database')):
            errors.append("%s: %s is the source itself (%s, database %s): a table cannot be "
                          "synchronised into itself" % (label, what, key[0], key[1]))
        elif key in seen_targets:
            errors.append('%s: target %s database %s is listed twice' % (label, key[0], key[1]))
        seen_targets.add(key)
        norm_targets.append({'host': key[0], 'database': key[1]})

    schemas = raw.get('schemas')
    errors.extend(_schema_errors(label, schemas, raw.get('exclude_tables')))
    tables = raw.get('tables', [] if schemas is not None else None)
    norm_tables = []
    keys = []
    if schemas is not None and _is_list(tables) and not tables:
        errors.append('%s: no tables: its schemas hold none, or they were not listed (the '
                      'sync_model role lists them on the source host, which must be in the run)' % label)
    elif not _is_list(tables) or not tables:
        errors.append('%s: tables must be a non-empty list' % label)
        tables = []
    seen = set()  # a list lookup here made validation quadratic in the set's table count
    for entry in tables:
        key, out, t_errors = _table_entry(label, entry)
        errors.extend(t_errors)
        if key is None:
            continue
        if key in seen:
            errors.append('%s: table %s is listed twice' % (label, format_qualified(*key)))
            continue
        seen.add(key)
        keys.append(key)
        norm_tables.append(out)

    publish = raw.get('publish')
    if publish is not None:
        if not _is_list(publish) or not publish or any(p not in PUBLISH for p in publish):
            errors.append('%s: publish must be a non-empty list of %s, got %r'
                          % (label, ', '.join(PUBLISH), publish))
            publish = None
        else:
            publish = list(publish)

    replica_identity = raw.get('replica_identity')
    if replica_identity is not None:
        ri_error = _replica_identity_error(replica_identity, keys)
        if ri_error:
            errors.append('%s: %s' % (label, ri_error))

    bidirectional = raw.get('bidirectional', False)
    if not isinstance(bidirectional, bool):
        errors.append('%s: bidirectional must be true or false, got %r' % (label, bidirectional))
        bidirectional = False
    elif bidirectional:
        errors.extend(_bidirectional_errors(label, raw, method, norm_tables, publish))

    # a bidirectional set cannot follow column changes in its stream (docs/bidirectional.md)
    schema_changes = raw.get('schema_changes', 'report' if bidirectional else 'follow')
    if schema_changes not in SCHEMA_CHANGES:
        errors.append('%s: schema_changes must be one of %s, got %r'
                      % (label, ', '.join(SCHEMA_CHANGES), schema_changes))
    elif 'schema_changes' in raw and method != 'logical':
        errors.append('%s: schema_changes applies to logical sets only (method %s)' % (label, method))

    generated = raw.get('publish_generated_columns', False)
    if not isinstance(generated, bool):
        errors.append('%s: publish_generated_columns must be true or false, got %r' % (label, generated))
    elif generated and method != 'logical':
        errors.append('%s: publish_generated_columns applies to logical sets only (method %s)'
                      % (label, method))

    if errors:
        return None, errors
    return {
        'name': name,
        'method': method,
        'schema_changes': schema_changes if method == 'logical' else None,
        # PostgreSQL 18 publishers: stored generated columns travel, targets hold plain columns
        'publish_generated_columns': generated,
        'bidirectional': bidirectional,
        'state': state,
        'source': {'host': source['host'], 'database': source['database']},
        'targets': norm_targets,
        'tables': norm_tables,
        'table_keys': keys,
        'publish': publish,
        'replica_identity': replica_identity,
    }, []


def _bidirectional_errors(label, raw, method, tables, publish):
    """A bidirectional set keeps every peer equal to every other: whole tables, every kind of
    change, column changes applied by the operator on every peer."""
    if method != 'logical':
        return ['%s: bidirectional applies to logical sets only (method %s)' % (label, method)]
    errors = []
    for entry in tables:
        if isinstance(entry, Mapping) and ('columns' in entry or 'where' in entry):
            errors.append('%s: table %s has a %s: a bidirectional set replicates whole tables both '
                          'ways (every peer holds the same rows and columns)'
                          % (label, entry['name'], 'row filter' if 'where' in entry else 'column list'))
    if publish is not None and sorted(publish) != sorted(PUBLISH):
        errors.append('%s: publish %s: a bidirectional set publishes every kind of change (%s), '
                      'or the peers would differ' % (label, ', '.join(publish), ', '.join(PUBLISH)))
    if raw.get('schema_changes') == 'follow':
        errors.append('%s: schema_changes follow is not available for bidirectional sets: apply a '
                      'column change on every peer in one migration (report, their default, shows '
                      'drift; docs/bidirectional.md)' % label)
    if raw.get('publish_generated_columns'):
        errors.append('%s: publish_generated_columns is not available for bidirectional sets (a '
                      'peer\'s generated column cannot take the values of another peer)' % label)
    return errors


def set_links(item):
    """The subscriptions of a parsed set, each ``{publisher, subscriber (each {host, database}),
    subscription, slot, copy, phase, origin}``.

    A one-way set: one link from the source to each target, which copies the rows (``copy_data``)
    in the ``forward`` phase. A bidirectional set: a link from every peer (the source and the
    targets) to every other peer, all with ``origin = none`` (a change that arrived by
    replication is never sent on: no loops); only the links from the source copy (``copy_data``), the others
    (phase ``return``) are created after every forward copy committed (playbooks/site.yml), so
    the copied rows are not sent back."""
    name = item['name']
    source = item['source']
    bidirectional = bool(item.get('bidirectional'))
    peers = [source] + list(item['targets'])
    links = []
    for publisher in (peers if bidirectional else [source]):
        from_source = publisher is source
        for subscriber in (peers if bidirectional else item['targets']):
            if subscriber is publisher:
                continue
            links.append({
                'publisher': publisher,
                'subscriber': subscriber,
                'subscription': subscription_name(name) if from_source else
                peer_subscription_name(name, publisher['host'], publisher['database']),
                'slot': slot_name(name, subscriber['host'], subscriber['database']),
                'copy_data': from_source,
                'phase': 'forward' if from_source else 'return',
                'origin': 'none' if bidirectional else None,
            })
    return links


def _schema_errors(label, schemas, exclude):
    """``schemas``: the set takes every table of these schemas (plugins/filter/sync_schemas.py);
    ``exclude_tables``: tables of those schemas it leaves out."""
    errors = []
    if schemas is not None and (not _is_list(schemas) or not schemas
                                or not all(isinstance(s, string_types) and s for s in schemas)):
        errors.append('%s: schemas must be a non-empty list of schema names, got %r' % (label, schemas))
    if exclude is None:
        return errors
    if schemas is None:
        errors.append('%s: exclude_tables needs schemas' % label)
    elif not _is_list(exclude):
        errors.append('%s: exclude_tables must be a list of table names, got %r' % (label, exclude))
    else:
        for name in exclude:
            try:
                parse_qualified(name)
            except (NameError_, TypeError, AttributeError) as e:
                errors.append('%s: exclude_tables: %s' % (label, e))
    return errors


def _replica_identity_error(value, keys):
    """replica_identity: 'full' / 'index:<name>' for the tables lacking a usable one, or
    {table: identity} (the identity each of these tables must have)."""
    if isinstance(value, string_types):
        if value not in REPLICA_IDENTITIES and not (value.startswith('index:') and len(value) > 6):
            return ('replica_identity must be one of %s or "index:<name>", or a dict '
                    '{table: identity}, got %r' % (', '.join(REPLICA_IDENTITIES), value))
        return None
    if isinstance(value, Mapping):
        for table, identity in value.items():
            try:
                key = parse_qualified(table)
            except NameError_ as e:
                return 'replica_identity: %s' % e
            if key not in keys:
                return ('replica_identity names table %s, which is not in the set\'s tables'
                        % format_qualified(*key))
            if not isinstance(identity, string_types):
                return 'replica_identity of %s must be a string' % format_qualified(*key)
            err = _replica_identity_error(identity, keys)
            if err:
                return err
        return None
    return 'replica_identity must be a string or a dict {table: identity}, got %r' % (value,)


def _parse_all(sets, inventory=None):
    if sets is None:
        sets = []
    if not _is_list(sets):
        return [], ['tablesync_sync_sets must be a list of sync sets, got %r' % (sets,)]
    parsed, errors = [], []
    names = {}
    for i, raw in enumerate(sets):
        item, item_errors = _parse_set(i, raw, inventory)
        errors.extend(item_errors)
        name = raw.get('name') if isinstance(raw, Mapping) else None
        if isinstance(name, string_types) and name:
            if name in names:
                errors.append("sync set '%s' is defined twice (sets #%d and #%d): set names "
                              "must be unique" % (name, names[name] + 1, i + 1))
            else:
                names[name] = i
        if item is not None:
            parsed.append(item)
    # One target table fed by two present sets: two subscriptions would write the same rows.
    fed = {}
    for item in parsed:
        if item['state'] != 'present':
            continue
        fed_ends = item['targets'] + ([item['source']] if item['bidirectional'] else [])
        for target in fed_ends:
            for key in item['table_keys']:
                where = (target['host'], target['database'], key)
                if where in fed and fed[where] != item['name']:
                    errors.append("table %s in database %s on %s is a target of both sync sets "
                                  "'%s' and '%s'" % (format_qualified(*key), target['database'],
                                                     target['host'], fed[where], item['name']))
                fed.setdefault(where, item['name'])
    return parsed, errors


def sync_model_errors(sets, inventory_hosts=None):
    """Every problem of the model as a list of messages (empty list: valid).

    ``inventory_hosts``: the inventory's host names (``groups['all']``); when given, every
    source and target host must be one of them.
    """
    inventory = None if inventory_hosts is None else set(inventory_hosts)
    return _parse_all(sets, inventory)[1]


def _address_of(hostvars):
    explicit = hostvars.get('tablesync_address')
    if explicit:
        return str(explicit)
    ansible_host = hostvars.get('ansible_host')
    if ansible_host:
        try:
            return str(ipaddress.ip_address(str(ansible_host)))
        except ValueError:
            pass
    facts = hostvars.get('ansible_default_ipv4') or \
        (hostvars.get('ansible_facts') or {}).get('default_ipv4') or {}
    if isinstance(facts, Mapping) and facts.get('address'):
        return str(facts['address'])
    return None


def sync_hosts(hostvars, hosts):
    """``{host: {address, port}}`` for the given inventory hosts.

    address: ``tablesync_address`` if set, else ``ansible_host`` if it is an IP address, else
    the gathered default IPv4 address (None when none of these is known).
    port: ``tablesync_port``, default 5432.
    """
    out = {}
    for host in hosts or []:
        try:
            hv = hostvars[host]
        except KeyError:
            hv = {}
        port = hv.get('tablesync_port') or DEFAULT_PORT
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise AnsibleFilterError('tablesync_port of %s must be a port number, got %r'
                                     % (host, port))
        address = _address_of(hv)
        if address is not None and not valid_address(address):
            raise AnsibleFilterError('tablesync_address of %s must be an IP address, a CIDR '
                                     'network or a host name, got %r' % (host, address))
        out[host] = {'address': address, 'port': port}
    return out


def _cidr(address):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a host name: pg_hba.conf accepts it as is
    return '%s/%d' % (ip, 32 if ip.version == 4 else 128)


def _need_address(hostvars, host, why, errors):
    info = sync_hosts(hostvars, [host])[host]
    if not info['address']:
        errors.append('the address of %s is unknown (%s): set tablesync_address or an IP '
                      'address as ansible_host for it, or gather its facts (do not --limit it '
                      'out of the preflight play)' % (host, why))
    return info['address'], info['port']


def sync_plan(sets, host, hostvars=None, methods=IMPLEMENTED_METHODS):
    """The part of the model ``host`` deploys (see the sync_model role's README).

    ``hostvars``: ``{host: {variables}}`` (Ansible's ``hostvars``); addresses and ports (see
    ``sync_hosts``) are looked up only for the hosts this one talks to: the publisher of every
    set it subscribes to and the subscribers of every set it publishes. Raises an error naming
    every invalid set or unknown address.
    """
    return _plan(_parsed(sets), host, hostvars, methods)


def sync_plans(sets, host, hostvars=None):
    """Every method's part of the model for ``host`` from one validation of the model:
    ``{'logical': plan, 'fdw': plan, 'trigger': plan, 'ignored_sets': [...]}`` (each plan as
    ``sync_plan`` returns it for that method; ``ignored_sets``: sets of methods this version
    does not deploy). The sync_model role computes it once per host and run; the method roles
    take their part from it."""
    parsed = _parsed(sets)
    plans = dict((method, _plan(parsed, host, hostvars, (method,))) for method in IMPLEMENTED_METHODS)
    plans['ignored_sets'] = _plan(parsed, host, hostvars, IMPLEMENTED_METHODS)['ignored_sets']
    return plans


def _parsed(sets):
    parsed, errors = _parse_all(sets)
    if errors:
        raise AnsibleFilterError('tablesync_sync_sets is invalid:\n- ' + '\n- '.join(errors))
    return parsed


def _plan(parsed, host, hostvars, methods):
    hostvars = hostvars or {}
    errors = []
    publisher_sets, subscriber_parts, ignored = [], [], []
    hba = {}
    select_tables = {}
    late = set()
    bidirectional = False
    for item in parsed:
        links = set_links(item)
        involved = item['source']['host'] == host or \
            any(t['host'] == host for t in item['targets'])
        if not involved:
            continue
        if item['method'] not in methods:
            ignored.append({'name': item['name'], 'method': item['method']})
            continue
        bidirectional = bidirectional or (item['bidirectional'] and item['state'] == 'present')
        for endpoint in _publishers_on(links, host):
            publisher_sets.append(_publisher_set(
                item, endpoint, [lk for lk in links if lk['publisher'] is endpoint],
                hostvars, hba, select_tables, late, errors))
        for link in links:
            if link['subscriber']['host'] == host:
                subscriber_parts.append(_subscriber_part(item, link, hostvars, errors))
    if errors:
        raise AnsibleFilterError('cannot plan %s:\n- %s' % (host, '\n- '.join(errors)))

    def wanted(items, key, db_key):
        out = {}
        for it in items:
            out.setdefault(it[db_key], [])
            if it['state'] == 'present':
                out[it[db_key]].append(it[key])
        return out

    present_pub = [s for s in publisher_sets if s['state'] == 'present']
    present_sub = [p for p in subscriber_parts if p['state'] == 'present']
    return {
        'host': host,
        'publisher_sets': publisher_sets,
        'subscriber_parts': subscriber_parts,
        'ignored_sets': ignored,
        'hba_entries': [{'database': db, 'address': addr, 'sets': sorted(names)}
                        for (db, addr), names in sorted(hba.items())],
        'select_tables': [{'database': db, 'tables': tables, 'after_tables': db in late}
                          for db, tables in sorted(select_tables.items())],
        'publications': wanted(publisher_sets, 'publication', 'database'),
        'subscriptions': wanted(subscriber_parts, 'subscription', 'database'),
        'slots': sorted(sub['slot'] for s in present_pub for sub in s['subscribers']),
        'counts': {
            'publications': len(present_pub),
            'subscriptions_served': sum(len(s['subscribers']) for s in present_pub),
            'subscriptions_held': len(present_sub),
        },
        'is_publisher': bool(present_pub),
        'is_subscriber': bool(present_sub),
        # a peer of a present bidirectional set (track_commit_timestamp, for conflict detection)
        'bidirectional': bidirectional,
    }


def _publishers_on(links, host):
    """The endpoints on ``host`` that publish in these links, each once, in order."""
    out = []
    for link in links:
        endpoint = link['publisher']
        if endpoint['host'] == host and not any(e is endpoint for e in out):
            out.append(endpoint)
    return out


def _peers(item):
    return [item['source']['host']] + [t['host'] for t in item['targets']] if item['bidirectional'] else []


def _publisher_set(item, endpoint, links, hostvars, hba, select_tables, late, errors):
    """One publication of a set (on its source; on every peer of a bidirectional set) with its
    subscribers; adds their pg_hba.conf entries to ``hba`` and the published tables to the
    replication role's ``select_tables``."""
    present = item['state'] == 'present'
    follow = item['schema_changes'] == 'follow'
    table_names = [format_qualified(*k) for k in item['table_keys']]
    subscribers = []
    for link in links:
        target = link['subscriber']
        address = None
        if present:
            address, _port = _need_address(
                hostvars, target['host'], 'subscriber of sync set %s' % item['name'], errors)
        subscribers.append({
            'host': target['host'],
            'database': target['database'],
            'address': address,
            'slot': link['slot'],
            'subscription': link['subscription'],
        })
        if present and address:
            key = (endpoint['database'], _cidr(address))
            hba.setdefault(key, []).append(item['name'])
    db = endpoint['database']
    select_tables.setdefault(db, [])
    if present and endpoint is not item['source']:
        # a bidirectional set's other peer: its tables are created by this run's forward link,
        # so the role's grants there wait for them (``after_tables``)
        late.add(db)
    if present:
        have = set(select_tables[db])
        # the queue of column changes is copied by the subscriptions too
        published = table_names + ([ddl_queue_name(item['name'])] if follow else [])
        select_tables[db].extend(t for t in published if t not in have)
    identity = item['replica_identity']
    return {
        'name': item['name'],
        'state': item['state'],
        'database': db,
        'publication': publication_name(item['name']),
        'schema_changes': item['schema_changes'],
        # with schema_changes follow: the queue of column changes and its publication
        'ddl_publication': follow and ddl_publication_name(item['name']) or None,
        'ddl_queue': ddl_queue_name(item['name']),
        # the trigger source's flush unit and foreign server to its target
        'flush_unit': flush_unit(item['name']),
        'server': server_name(item['name']),
        'tables': _with_identities(item['tables'], identity),
        'table_names': table_names,
        'publish': item['publish'],
        'publish_generated_columns': item['publish_generated_columns'],
        # one identity for every table lacking a usable one (pg_publication's option)
        'replica_identity': identity if isinstance(identity, string_types) else None,
        'subscribers': subscribers,
        # a bidirectional set: every peer's host (each must run PostgreSQL 16+)
        'peers': _peers(item),
    }


def _subscriber_part(item, link, hostvars, errors):
    """One subscription of this host: the link's subscriber end."""
    present = item['state'] == 'present'
    follow = item['schema_changes'] == 'follow'
    publication = publication_name(item['name'])
    table_names = [format_qualified(*k) for k in item['table_keys']]
    source = link['publisher']
    target = link['subscriber']
    address, port = None, DEFAULT_PORT
    if present:
        address, port = _need_address(
            hostvars, source['host'], 'publisher of sync set %s' % item['name'], errors)
    else:
        port = sync_hosts(hostvars, [source['host']])[source['host']]['port']
    return {
        'key': '%s/%s' % (target['database'], link['subscription']),
        'set': item['name'],
        'state': item['state'],
        'database': target['database'],
        'subscription': link['subscription'],
        'publication': publication,
        'schema_changes': item['schema_changes'],
        'publish_generated_columns': item['publish_generated_columns'],
        # what the subscription subscribes to and the tables it then holds
        'publications': [publication] + ([ddl_publication_name(item['name'])] if follow else []),
        'subscribed_names': table_names + ([ddl_queue_name(item['name'])] if follow else []),
        # the fdw consumer's foreign server and local copies' refresh unit
        'server': server_name(item['name']),
        'refresh_unit': refresh_unit(item['name']),
        'slot': link['slot'],
        # bidirectional sets: origin none on every link, the rows copied by the forward links
        # only, the return links created after the forward copies (playbooks/site.yml)
        'copy_data': link['copy_data'],
        'phase': link['phase'],
        'origin': link['origin'],
        'peers': _peers(item),
        # a peer takes writes of its own: its tables get the source's whole definition
        'table_definition': 'peer' if item.get('bidirectional') else 'replica',
        'tables': item['tables'],
        'table_names': table_names,
        # what pg_target_tables takes: names and column lists (rows filters are
        # the publication's business)
        'target_tables': [_without_where(t) for t in item['tables']],
        'publisher': {
            'host': source['host'],
            'address': address,
            'port': port,
            'database': source['database'],
        },
    }


def _without_where(entry):
    """A table entry as pg_target_tables takes it: name and columns only."""
    if isinstance(entry, Mapping):
        entry = dict((k, v) for k, v in entry.items() if k in ('name', 'columns'))
        if list(entry) == ['name']:
            return entry['name']
    return entry


def _with_identities(tables, identity):
    """Table entries with the per-table identities of a {table: identity} dict merged in."""
    if not isinstance(identity, Mapping) or not identity:
        return tables
    wanted = dict((parse_qualified(k), v) for k, v in identity.items())
    out = []
    for entry in tables:
        name = entry['name'] if isinstance(entry, Mapping) else entry
        key = parse_qualified(name)
        if key in wanted:
            entry = dict(entry) if isinstance(entry, Mapping) else {'name': name}
            entry['replica_identity'] = wanted[key]
        out.append(entry)
    return out


def _round_up(value, step):
    step = max(int(step or 1), 1)
    return ((int(value) + step - 1) // step) * step


def replication_settings(plan, sync_workers=2, headroom=4, step=10, minimums=None,
                         extra=None, parallel_apply_workers=2, standbys=0):
    """Server settings for a host's part of the model (``plan`` from ``sync_plan``).

    Publisher: wal_level=logical; max_replication_slots / max_wal_senders cover one slot and
    walsender per subscription served plus ``sync_workers`` temporary ones per subscription
    during the initial copy, plus ``headroom``. Subscriber: max_logical_replication_workers
    covers an apply worker, ``sync_workers`` table-sync workers and ``parallel_apply_workers``
    (PostgreSQL 16+, ``streaming = parallel``, the default from 18; PostgreSQL's
    max_parallel_apply_workers_per_subscription) per subscription, so no worker start fails
    with "out of logical replication worker slots";
    max_replication_slots covers one replication origin per subscription (PostgreSQL < 18),
    max_active_replication_origins the same on PostgreSQL 18+ (the postgresql_server role
    leaves it out on older servers, which do not have it); max_worker_processes leaves 8 to
    parallel query and other background workers. ``standbys``: the publisher's physical standbys
    (a slot and a walsender each). A peer of a bidirectional set gets
    track_commit_timestamp = on.
    Counts are rounded up to ``step`` (fewer restarts as sets are added) and never go below
    ``minimums`` (PostgreSQL's defaults by default). ``extra`` is merged last (user
    overrides; a value of None removes a setting from management).
    """
    mins = {'max_replication_slots': 10, 'max_wal_senders': 10,
            'max_logical_replication_workers': 4, 'max_worker_processes': 8,
            'max_active_replication_origins': 10}
    mins.update(minimums or {})
    counts = plan.get('counts') or {}
    served = int(counts.get('subscriptions_served') or 0)
    held = int(counts.get('subscriptions_held') or 0)
    per_sub = 1 + int(sync_workers)
    out = {}
    slots = 0
    if plan.get('is_publisher'):
        out['wal_level'] = 'logical'
        # a physical slot and a walsender per standby (docs/failover.md)
        slots += served * per_sub + int(standbys)
        out['max_wal_senders'] = max(_round_up(served * per_sub + int(standbys) + headroom, step),
                                     mins['max_wal_senders'])
    if plan.get('is_subscriber'):
        slots += held
        workers = max(_round_up(held * (per_sub + int(parallel_apply_workers)) + headroom, step),
                      mins['max_logical_replication_workers'])
        out['max_logical_replication_workers'] = workers
        out['max_worker_processes'] = max(workers + 8, mins['max_worker_processes'])
        out['max_sync_workers_per_subscription'] = int(sync_workers)
        out['max_active_replication_origins'] = max(_round_up(held + headroom, step),
                                                    mins['max_active_replication_origins'])
    if plan.get('bidirectional'):
        # commit origins and times: PostgreSQL 18 then detects and counts update_origin_differs
        # and delete_origin_differs (one row changed on two peers), docs/bidirectional.md
        out['track_commit_timestamp'] = 'on'
    if plan.get('is_publisher') or plan.get('is_subscriber'):
        out['max_replication_slots'] = max(_round_up(slots + headroom, step),
                                           mins['max_replication_slots'])
    for name, value in (extra or {}).items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def sync_subscription_status(results, refreshed=None):
    """Summary of the subscriptions a subscriber holds, from the registered loop results of
    pg_subscription (``results``; ``refreshed``: those of the refresh step, which win).

    -> ``{'<database>/<subscription>': {set, database, subscription, exists, enabled,
    tables, ready, waiting}}`` (``waiting``: the tables not ready yet).
    """
    out = {}
    for result in list(results or []) + list(refreshed or []):
        part = result.get('item') or {}
        if 'item' in part:  # a refresh result: its item is the first step's result
            part = part['item']
        if result.get('skipped') or not part.get('key'):
            continue
        sub = result.get('subscription') or {}
        tables = sub.get('tables') or []
        out[part['key']] = {
            'set': part.get('set'),
            'database': part.get('database'),
            'subscription': part.get('subscription'),
            'exists': bool(result.get('exists')),
            'enabled': sub.get('enabled'),
            'tables': len(tables),
            'ready': len([t for t in tables if t.get('state') == 'ready']),
            'waiting': ['%s (%s)' % (t.get('name'), t.get('state')) for t in tables
                        if t.get('state') != 'ready'],
        }
    return out


def _loop_results(results):
    """The results of a registered loop, or the one result of a task without a loop."""
    if isinstance(results, Mapping):
        results = results['results'] if 'results' in results else [results]
    return [r for r in results or [] if isinstance(r, Mapping) and not r.get('skipped')
            and not r.get('failed')]


def sync_cleanup(infos, sets, wanted_slots=None, prefix=PREFIX):
    """What the publisher's cleanup drops, from the result of pg_sync_info with
    ``each_database`` (each publication names its ``database``) or from its loop results (one
    per database, ``item`` = the database name), and the host's publisher sets (present and
    absent).

    -> ``{'publications': [{database, name}], 'slots': [slot names]}``: ``prefix``ed
    publications that no set of the model names (sets marked absent are dropped by their own
    task), and ``prefix``ed logical slots that no present set needs and no consumer uses.
    """
    known = set((s['database'], s['publication']) for s in sets or [])
    # a set's queue publication is wanted while the set is present and follows schema changes
    known.update((s['database'], s['ddl_publication']) for s in sets or []
                 if s.get('ddl_publication') and s.get('state') == 'present')
    wanted = set(wanted_slots or [])
    publications, slots = [], {}
    for result in _loop_results(infos):
        for publication in result.get('publications') or []:
            database = publication.get('database') or result.get('item')
            name = publication.get('name') or ''
            if name.startswith(prefix) and (database, name) not in known:
                publications.append({'database': database, 'name': name})
        for slot in result.get('slots') or []:
            name = slot.get('slot_name') or ''
            if name.startswith(prefix) and name not in wanted and not slot.get('active') \
                    and slot.get('slot_type', 'logical') == 'logical':
                slots[name] = slot
    return {'publications': publications, 'slots': sorted(slots)}


def sync_report(sets, infos, hostvars=None):
    """One summary per present set of a publisher: tables, subscribers, states and lag.

    ``sets``: the host's publisher sets; ``infos``: pg_sync_info loop results (one per
    database, ``item`` = the database name), or the one result of pg_sync_info with
    ``each_database`` (each publication names its ``database``; the cleanup's read of the same
    run); ``hostvars``: to read each subscriber's ``logical_subscriber_status`` (recorded by the
    logical_subscriber role).
    """
    hostvars = hostvars or {}
    by_db = {}
    for result in _loop_results(infos):
        if 'databases' in result:
            for database in result.get('databases') or []:
                by_db[database] = {
                    'publications': [p for p in result.get('publications') or []
                                     if p.get('database') == database],
                    'slots': result.get('slots') or []}
        else:
            by_db[result.get('item')] = result
    report = []
    for item in sets or []:
        if item.get('state') != 'present':
            continue
        info = by_db.get(item['database']) or {}
        publication = dict((p.get('name'), p) for p in info.get('publications') or []).get(
            item['publication'])
        slots = dict((s.get('slot_name'), s) for s in info.get('slots') or [])
        targets = []
        for sub in item.get('subscribers') or []:
            slot = slots.get(sub['slot'])
            try:
                status = (hostvars[sub['host']].get('logical_subscriber_status') or {}).get(
                    '%s/%s' % (sub['database'], sub['subscription']))
            except KeyError:
                status = None
            line = {
                'target': '%s/%s' % (sub['host'], sub['database']),
                'slot': sub['slot'],
                'slot_active': slot.get('active') if slot else None,
                'lag_bytes': slot.get('lag_bytes') if slot else None,
                'retained_bytes': slot.get('retained_bytes') if slot else None,
                'wal_status': slot.get('wal_status') if slot else None,
            }
            if status:
                line['subscription'] = 'enabled' if status.get('enabled') else 'disabled'
                line['tables_ready'] = '%s/%s' % (status.get('ready'), status.get('tables'))
                if status.get('waiting'):
                    line['tables_waiting'] = status['waiting']
            else:
                line['subscription'] = 'unknown (subscriber not in this run)' if slot \
                    else 'missing'
            targets.append(line)
        report.append({
            'set': item['name'],
            'publication': '%s in %s (%s)' % (
                item['publication'], item['database'],
                'exists' if publication else 'missing'),
            'tables': len(item.get('table_names') or []),
            'tables_published': len(publication.get('tables') or []) if publication else 0,
            'publish': publication.get('publish') if publication else None,
            'targets': targets,
        })
    return report


class FilterModule(object):
    def filters(self):
        return {
            'sync_model_errors': sync_model_errors,
            'sync_hosts': sync_hosts,
            'sync_plan': sync_plan,
            'sync_plans': sync_plans,
            'replication_settings': replication_settings,
            'sync_subscription_status': sync_subscription_status,
            'sync_cleanup': sync_cleanup,
            'sync_report': sync_report,
        }
