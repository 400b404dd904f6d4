# -*- coding: utf-8 -*-
"""pg_publication module: documentation matches the argument spec; catalog queries by version."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.tablesync.postgresql.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.tablesync.postgresql.plugins.modules import pg_publication
from ansible_collections.tablesync.postgresql.plugins.module_utils.statements import Statement, render


def documented_options():
    options = dict(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options'])
    options.update(yaml.safe_load(pg_publication.DOCUMENTATION)['options'])
    return options


def test_documentation_matches_argument_spec():
    docs = documented_options()
    spec = pg_publication.argument_spec()
    assert sorted(docs) == sorted(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc.get('type', 'str') == option.get('type', 'str'), name
        assert doc.get('default') == option.get('default'), name
        assert doc.get('choices') == option.get('choices'), name
        assert doc.get('elements') == option.get('elements'), name
        assert doc.get('aliases') == option.get('aliases'), name
        assert bool(doc.get('required')) == bool(option.get('required')), name


def test_examples_and_return_parse_and_use_fqcn():
    examples = yaml.safe_load(pg_publication.EXAMPLES)
    assert examples and all('tablesync.postgresql.pg_publication' in task for task in examples)
    returned = yaml.safe_load(pg_publication.RETURN)
    assert set(returned) == set(['queries', 'exists', 'recreated', 'replica_identity_changes',
                                 'publication', 'diff'])
    doc = yaml.safe_load(pg_publication.DOCUMENTATION)
    assert doc['version_added'] == '0.1.0'
    assert doc['attributes']['check_mode']['support'] == 'full'
    assert doc['attributes']['diff_mode']['support'] == 'full'


@pytest.mark.parametrize('version, present, absent', [
    (150004, ['p.pubtruncate', 'p.pubviaroot', 'r.prattrs', 'r.prqual', 'pg_publication_namespace'], []),
    (130000, ['p.pubtruncate', 'p.pubviaroot'], ['prattrs', 'prqual', 'pg_publication_namespace']),
    (100000, ['false AS pubtruncate', 'NULL::boolean AS pubviaroot'],
     ['p.pubtruncate', 'p.pubviaroot', 'prattrs', 'prqual', 'pg_publication_namespace']),
])
def test_read_query_by_version(version, present, absent):
    text = render(Statement(pg_publication.read_query(version)))
    for word in present:
        assert word in text
    for word in absent:
        assert word not in text
    assert '%(name)s' in text


def test_resolve_query_by_version():
    assert 'i.indnkeyatts' in render(Statement(pg_publication.resolve_query(150000)))
    assert 'i.indnatts' in render(Statement(pg_publication.resolve_query(100000)))
