"""tablesync.postgresql.pg_databases against the publisher cluster, as a login with CREATEDB
only: check mode creates nothing, the missing databases are created (odd names quoted, owned
by the login or the given owner), a second run changes nothing, and a login without CREATEDB
fails with the server's reason and creates nothing."""
import uuid

from psycopg2 import sql

from runner import run_module

MODULE = 'tablesync.postgresql.pg_databases'
PASSWORD = 'Createdb-pw-1'


def login(pg, role):
    return dict(login_host=pg.host, login_port=pg.port, login_user=role, login_password=PASSWORD,
                login_db='postgres')


def owners(pg, names):
    return pg.query('SELECT datname, pg_get_userbyid(datdba) FROM pg_database '
                    'WHERE datname = ANY(%s) ORDER BY 1', (names,))


def test_missing_databases_created_once_as_the_login(publisher):
    role = 'dbmaker_%s' % uuid.uuid4().hex[:8]
    publisher.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEDB PASSWORD %s').format(sql.Identifier(role)),
                      (PASSWORD,))
    names = ['pgdb_%s' % uuid.uuid4().hex[:8], 'Pgdb "odd" %s' % uuid.uuid4().hex[:4], 'postgres']

    result = run_module(MODULE, dict(login(publisher, role), names=names), check=True, diff=True)
    assert result['changed'] and result['created'] == names[:2] and owners(publisher, names[:2]) == []
    assert result['diff']['before'] == {'existing': ['postgres']}

    result = run_module(MODULE, dict(login(publisher, role), names=names))
    assert result['changed'] and result['created'] == names[:2], result.get('msg')
    assert result['queries'] == ['CREATE DATABASE "%s"' % names[0],
                                 'CREATE DATABASE "Pgdb ""odd"" %s"' % names[1][-4:]]
    assert owners(publisher, names[:2]) == sorted((n, role) for n in names[:2])
    result = run_module(MODULE, dict(login(publisher, role), names=names))
    assert result['changed'] is False and result['queries'] == []

    publisher.execute(sql.SQL('ALTER ROLE {} NOCREATEDB').format(sql.Identifier(role)))
    other = 'pgdb_%s' % uuid.uuid4().hex[:8]
    result = run_module(MODULE, dict(login(publisher, role), names=[other]))
    assert result['failed'] and 'permission denied to create database' in result['msg']
    assert owners(publisher, [other]) == []
