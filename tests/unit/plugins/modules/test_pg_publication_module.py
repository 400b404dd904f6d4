# -*- coding: utf-8 -*-
"""pg_publication module: return values documented; catalog queries by version (documentation
against the argument spec: test_module_standards.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.tablesync.postgresql.plugins.modules import pg_publication
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement, render


def test_examples_and_return_parse_and_use_fqcn():
    examples = yaml.safe_load(pg_publication.EXAMPLES)
    assert examples and all('tablesync.postgresql.pg_publication' in task for task in examples)
    returned = yaml.safe_load(pg_publication.RETURN)
    assert set(returned) == set(['queries', 'exists', 'recreated', 'replica_identity_changes', 'filter_changed',
                                 'converged',
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
