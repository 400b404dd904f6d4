"""missing_privileges: what a database-only host's administrator login lacks, per need."""
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.facts import (
    missing_privileges)

LOGIN = {'login': 'admin', 'superuser': False, 'createrole': True, 'createdb': False,
         'replication': False, 'memberships': [], 'version_num': 170004}


def test_superuser_has_everything():
    assert missing_privileges(dict(LOGIN, superuser=True, version_num=150000),
                              ['createrole', 'createdb', 'create_subscription', 'replication']) == []


def test_each_missing_privilege_named_with_its_grant():
    out = missing_privileges(LOGIN, ['createrole', 'createdb', 'create_subscription', 'replication'])
    assert len(out) == 3
    assert out[0].startswith('CREATEDB') and 'ALTER ROLE admin CREATEDB' in out[0]
    assert 'GRANT pg_create_subscription TO admin' in out[1]
    assert 'ALTER ROLE admin REPLICATION' in out[2]
    assert missing_privileges(dict(LOGIN, createdb=True, replication=True,
                                   memberships=['pg_create_subscription']),
                              ['createrole', 'createdb', 'create_subscription', 'replication']) == []


def test_subscriptions_without_superuser_need_16():
    out = missing_privileges(dict(LOGIN, version_num=150008, memberships=['pg_create_subscription']),
                             ['create_subscription'])
    assert out == ['subscriptions owned by a role without superuser need PostgreSQL 16 or later '
                   '(this server runs 150008)']


def test_provider_role_instead_of_the_attribute():
    assert 'GRANT rds_replication TO admin WITH ADMIN OPTION' in missing_privileges(
        LOGIN, ['replication'], 'rds_replication')[0]
    assert missing_privileges(dict(LOGIN, memberships=['rds_replication']), ['replication'],
                              'rds_replication') == []
