# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema-wide sync sets: a set with ``schemas`` gets every table of those schemas.

The sync_model role lists the tables on each such set's source (one query per set, on the
source host: ``roles/sync_model/tasks/schemas.yml``) and replaces the sets by the same sets
with ``tables`` completed; everything after that (publications, target tables, subscriptions,
triggers, foreign tables, checks) works from the completed list. A table created in one of the
schemas therefore joins its set at the next run of site.yml. Pure functions:

- ``sync_schema_sources(sets, host)`` -> the sets with ``schemas`` whose source is ``host``;
- ``sync_expand_schemas(sets, hostvars)`` -> the sets with their ``tables`` completed from what
  each source host found (``sync_model_schema_tables``: ``{set: {tables, missing}}``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, format_qualified, parse_qualified)

FOUND_VAR = 'sync_model_schema_tables'


def _is_schema_set(raw):
    return isinstance(raw, Mapping) and raw.get('schemas') is not None


def sync_schema_sources(sets, host):
    """The sets with ``schemas`` whose source is ``host`` (valid or not: the model's validation
    names their problems), each as ``{name, database, schemas}``."""
    out = []
    for raw in sets or []:
        if not _is_schema_set(raw):
            continue
        source = raw.get('source') if isinstance(raw.get('source'), Mapping) else {}
        schemas = raw.get('schemas')
        if source.get('host') != host or not isinstance(schemas, list):
            continue
        if not all(isinstance(s, string_types) and s for s in schemas):
            continue
        out.append({'name': raw.get('name'), 'database': source.get('database'),
                    'schemas': list(schemas)})
    return out


def _entry_key(entry):
    name = entry.get('name') if isinstance(entry, Mapping) else entry
    try:
        return parse_qualified(name)
    except (NameError_, TypeError, AttributeError):
        return None


def expand_set(raw, found):
    """One set with ``tables`` completed: the entries listed (they keep their options) and then
    every other table found in its schemas, in name order, less ``exclude_tables``. ``found``:
    ``{tables: [[schema, table]], missing: [schema]}`` or None when nothing was listed (the
    set's validation then says why). Raises AnsibleFilterError for a schema that does not exist."""
    if found is None:
        return raw
    if found.get('missing'):
        raise AnsibleFilterError(
            "sync set '%s': schema(s) %s do not exist in database %s on %s"
            % (raw.get('name'), ', '.join(found['missing']), (raw.get('source') or {}).get('database'),
               (raw.get('source') or {}).get('host')))
    listed = list(raw.get('tables') or [])
    keys = set(_entry_key(e) for e in listed)
    excluded = set(_entry_key(e) for e in raw.get('exclude_tables') or [])
    added = [format_qualified(schema, table) for schema, table in found.get('tables') or []
             if (schema, table) not in keys and (schema, table) not in excluded]
    out = dict(raw)
    out['tables'] = [e for e in listed if _entry_key(e) not in excluded] + added
    return out


def sync_expand_schemas(sets, hostvars=None):
    """The sets with the ``tables`` of every schema-wide set completed from what its source host
    listed (``hostvars[source][sync_model_schema_tables]``). Sets without ``schemas``, and
    schema-wide sets whose source did not list its tables (not in the run), are returned as
    they are."""
    hostvars = hostvars or {}
    out = []
    for raw in sets or []:
        if not _is_schema_set(raw):
            out.append(raw)
            continue
        source = raw.get('source') if isinstance(raw.get('source'), Mapping) else {}
        host_vars = hostvars.get(source.get('host')) or {}
        found = (host_vars.get(FOUND_VAR) or {}).get(raw.get('name'))
        out.append(expand_set(raw, found))
    return out


class FilterModule(object):
    def filters(self):
        return {
            'sync_schema_sources': sync_schema_sources,
            'sync_expand_schemas': sync_expand_schemas,
        }
