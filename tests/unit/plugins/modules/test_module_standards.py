# -*- coding: utf-8 -*-
"""Every module of the collection: documentation matches the argument spec (suboptions included),
every secret option is no_log, examples use FQCNs, check and diff mode are documented."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os

import pytest
import yaml

MODULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..',
                           'plugins', 'modules')
# every module file, found on disk: a new module is covered without being listed here
MODULES = sorted(f[:-3] for f in os.listdir(MODULES_DIR)
                 if f.endswith('.py') and not f.startswith('_'))
SECRET_WORDS = ('password', 'passphrase', 'secret', 'token')


def load(name):
    return importlib.import_module('ansible_collections.tablesync.postgresql.plugins.modules.' + name)


def merged_doc(module, key):
    """One key (options, attributes) of the module's documentation with its doc fragments'."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    merged = {}
    for fragment in doc.get('extends_documentation_fragment') or []:
        assert fragment.startswith('tablesync.postgresql.'), fragment
        fragments = importlib.import_module('ansible_collections.tablesync.postgresql.plugins.'
                                            'doc_fragments.' + fragment.split('.')[-1])
        merged.update(yaml.safe_load(fragments.ModuleDocFragment.DOCUMENTATION).get(key) or {})
    merged.update(doc.get(key) or {})
    return merged


def documented_options(module):
    """The options of the module's documentation with those of its doc fragments."""
    return merged_doc(module, 'options')


def compare(docs, spec, path):
    assert sorted(docs) == sorted(spec), path
    for name, option in spec.items():
        doc, where = docs[name], path + [name]
        for key, default in (('type', 'str'), ('default', None), ('choices', None),
                             ('elements', None)):
            assert doc.get(key, default) == option.get(key, default), (where, key)
        assert (doc.get('aliases') or []) == (option.get('aliases') or []), where
        assert bool(doc.get('required')) == bool(option.get('required')), where
        # a ': ' in a plain YAML line turns a description item into a mapping
        description = doc.get('description')
        assert all(isinstance(item, str) for item in (
            description if isinstance(description, list) else [description])), (where, description)
        if option.get('options'):
            compare(doc.get('suboptions') or {}, option['options'], where)


def secret_options(spec, path=()):
    found = []
    for name, option in spec.items():
        if any(word in name for word in SECRET_WORDS):
            found.append((path + (name,), option))
        found.extend(secret_options(option.get('options') or {}, path + (name,)))
    return found


@pytest.mark.parametrize('name', MODULES)
def test_documentation_matches_argument_spec(name):
    module = load(name)
    compare(documented_options(module), module.argument_spec(), [])


@pytest.mark.parametrize('name', MODULES)
def test_every_secret_option_is_no_log(name):
    spec = load(name).argument_spec()
    found = secret_options(spec)
    # every module has login_password (the shared connection options)
    assert found, 'no secret option found at all: the walk over the spec is broken'
    for path, option in found:
        if option.get('type', 'str') == 'str' and 'password' in path[-1] \
                and not path[-1].endswith(('_required', 'update_password')):
            assert option.get('no_log') is True, path
        else:
            # flags about secrets (password_required, update_password) say so explicitly
            assert 'no_log' in option, path


@pytest.mark.parametrize('name', MODULES)
def test_examples_use_fqcn_and_modes_are_documented(name):
    module = load(name)
    examples = yaml.safe_load(module.EXAMPLES)
    assert examples
    fqcn = 'tablesync.postgresql.' + name
    assert any(fqcn in task for task in examples)
    for task in examples:
        modules = [k for k in task if '.' in k]
        assert modules and all(k.count('.') == 2 for k in modules), task.get('name')
    attributes = merged_doc(module, 'attributes')
    assert attributes['check_mode']['support'] in ('full', 'partial')
    assert 'diff_mode' in attributes
    assert yaml.safe_load(module.RETURN)


def test_every_module_is_covered():
    assert len(MODULES) == len(set(MODULES)) >= 13, MODULES
    assert 'pg_sync_trigger' in MODULES and 'pg_fdw_server' in MODULES


def test_every_module_is_in_the_action_group():
    """The roles give connection options once per task file through module_defaults for
    group/tablesync.postgresql.postgresql: a module missing from the group would connect with
    libpq's defaults instead."""
    runtime = os.path.join(MODULES_DIR, '..', '..', 'meta', 'runtime.yml')
    with open(runtime) as handle:
        group = yaml.safe_load(handle)['action_groups']['postgresql']
    assert sorted(group) == MODULES
