# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical standbys of publishers, for failover slots (PostgreSQL 17+, docs/failover.md).

A host with ``tablesync_standby_of: <publisher>`` in the inventory is a streaming standby of
that publisher. Pure functions, used as filters:

- ``standby_plan(hostvars, host, hosts, sets)`` -> this host's part: ``primary`` (the publisher
  it follows, when it is a standby), ``slot`` (its physical slot there), ``standbys`` (the
  standbys that follow it, when it is a publisher);
- ``standby_settings(plan, user, passfile, sslmode)`` -> the server settings that part needs.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping

from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import _cidr, _parse_all, sync_hosts
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import build_conninfo
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import standby_slot_name

VAR = 'tablesync_standby_of'


def _vars(hostvars, host):
    try:
        hv = hostvars[host]
    except KeyError:
        return {}
    return hv if isinstance(hv, Mapping) else {}


def _primary_of(hostvars, host):
    value = _vars(hostvars, host).get(VAR)
    return value or None


def _set_hosts(sets):
    """(hosts taking part in present sets, hosts publishing a present logical set)."""
    parsed, _errors = _parse_all(sets)
    involved, publishers = set(), set()
    for item in parsed:
        if item['state'] != 'present':
            continue
        ends = [item['source']] + item['targets']
        involved.update(e['host'] for e in ends)
        if item['method'] == 'logical':
            publishers.update(e['host'] for e in (ends if item['bidirectional'] else [item['source']]))
    return involved, publishers


def standby_errors(hostvars, hosts, sets=None):
    """Every problem of the inventory's standbys, as messages (empty: valid)."""
    hosts = list(hosts or [])
    involved, publishers = _set_hosts(sets)
    errors = []
    for host in hosts:
        primary = _primary_of(hostvars, host)
        if primary is None:
            continue
        what = '%s of %s' % (VAR, host)
        if not isinstance(primary, string_types):
            errors.append('%s must be an inventory host name, got %r' % (what, primary))
        elif primary == host:
            errors.append('%s names the host itself' % what)
        elif primary not in hosts:
            errors.append("%s: '%s' is not a host of this inventory" % (what, primary))
        elif _primary_of(hostvars, primary) is not None:
            errors.append('%s: %s is a standby itself (cascading standbys are not managed)' % (what, primary))
        elif primary not in publishers:
            errors.append('%s: %s publishes no present logical sync set (failover slots serve '
                          'publishers only)' % (what, primary))
        if host in involved:
            errors.append('%s: %s takes part in sync sets itself, and a standby is read-only (name '
                          'its primary in the sets instead)' % (what, host))
    return errors


def standby_plan(hostvars, host, hosts, sets=None):
    """This host's part: ``{primary: {host, address, port} | None, slot: str | None,
    standbys: [{host, address, hba_address, slot}]}``; raises an error naming every problem."""
    hosts = list(hosts or [])
    errors = standby_errors(hostvars, hosts, sets)
    if errors:
        raise AnsibleFilterError('the standbys of this inventory are invalid:\n- ' + '\n- '.join(errors))
    out = {'primary': None, 'slot': None, 'standbys': []}
    primary = _primary_of(hostvars, host)
    problems = []
    if primary is not None:
        where = sync_hosts(hostvars, [primary])[primary]
        if not where['address']:
            problems.append('the address of %s (the primary of %s) is unknown' % (primary, host))
        out['primary'] = {'host': primary, 'address': where['address'], 'port': where['port']}
        out['slot'] = standby_slot_name(host)
    for other in hosts:
        if other != host and _primary_of(hostvars, other) == host:
            where = sync_hosts(hostvars, [other])[other]
            if not where['address']:
                problems.append('the address of %s (a standby of %s) is unknown' % (other, host))
            out['standbys'].append({'host': other, 'address': where['address'],
                                    'hba_address': where['address'] and _cidr(where['address']),
                                    'slot': standby_slot_name(other)})
    if problems:
        raise AnsibleFilterError('cannot plan the standbys of %s: %s (set tablesync_address or '
                                 'gather its facts)' % (host, '; '.join(problems)))
    return out


def standby_settings(plan, user, passfile, sslmode='prefer', publisher=False):
    """The settings of a standby (streaming from its primary through its slot, hot standby
    feedback, logical slots synchronised) or of a primary (its logical walsenders wait for its
    standbys' slots, so no subscriber gets ahead of a standby that may be promoted). On every
    other ``publisher`` the list is kept empty: a standby removed from the inventory no longer
    holds back its former primary's subscribers."""
    plan = plan or {}
    out = {}
    primary = plan.get('primary')
    if primary:
        out.update({
            # dbname: the slot sync worker connects to a database; the password is in passfile
            'primary_conninfo': build_conninfo({
                'host': primary['address'], 'port': primary['port'], 'user': user,
                'passfile': passfile, 'dbname': 'postgres', 'sslmode': sslmode,
                'application_name': plan['slot']}),
            'primary_slot_name': plan['slot'],
            'hot_standby_feedback': 'on',
            'sync_replication_slots': 'on',
            'wal_level': 'logical',
            # the copy brought the primary's list: promoted, this server has no standbys of its
            # own, and a listed slot that does not exist would hold back every failover slot
            'synchronized_standby_slots': '',
        })
    if plan.get('standbys') or (publisher and not primary):
        out['synchronized_standby_slots'] = ','.join(s['slot'] for s in plan.get('standbys') or [])
    return out


def pgpass_line(fields):
    """One line of a libpq password file from its five fields (host, port, database, user,
    password), with ``:`` and ``\\`` escaped as libpq reads them back."""
    if len(fields) != 5:
        raise AnsibleFilterError('pgpass_line takes host, port, database, user and password')
    return ':'.join(str(f).replace('\\', '\\\\').replace(':', '\\:') for f in fields)


class FilterModule(object):
    def filters(self):
        return {
            'pgpass_line': pgpass_line,
            'standby_errors': standby_errors,
            'standby_plan': standby_plan,
            'standby_settings': standby_settings,
        }
