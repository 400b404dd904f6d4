"""Throw-away PostgreSQL clusters on free loopback ports, for the integration tests.

Each cluster runs under the ``postgres`` OS user (initdb refuses root), listens on 127.0.0.1
and its own socket directory, has ``wal_level = logical`` and logs every statement (so the
tests can prove passwords never reach the server log in clear text when we did not send them).
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg2

SUPERUSER = 'postgres'
SUPERPASS = 'It-super-S3cret'


def pg_bindir():
    override = os.environ.get('PG_BINDIR')
    if override:
        return override
    candidates = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'),
                        key=lambda p: int(p.split('/')[4]))
    if not candidates:
        raise RuntimeError('no PostgreSQL server binaries under /usr/lib/postgresql; '
                           'run scripts/bootstrap.sh')
    return os.path.dirname(candidates[-1])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_postgres(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ['runuser', '-u', 'postgres', '--'] + cmd
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kw)


class Cluster(object):
    def __init__(self, name, base):
        self.name = name
        self.bindir = pg_bindir()
        self.datadir = os.path.join(base, name)
        self.sockdir = os.path.join(base, name + '-sock')
        self.logfile = os.path.join(base, name + '.log')
        self.port = free_port()
        self.host = '127.0.0.1'
        self.user = SUPERUSER
        self.password = SUPERPASS

    def start(self):
        os.makedirs(self.sockdir)
        pwfile = os.path.join(os.path.dirname(self.datadir), self.name + '.pw')
        with open(pwfile, 'w') as f:
            f.write(self.password + '\n')
        if os.geteuid() == 0:
            pw = pwd.getpwnam('postgres')
            for path in (self.sockdir, pwfile):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        _as_postgres([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', SUPERUSER,
                      '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256',
                      '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        os.unlink(pwfile)
        conf = {
            'port': self.port,
            'listen_addresses': "'127.0.0.1'",
            'unix_socket_directories': "'%s'" % self.sockdir,
            'wal_level': 'logical',
            'max_replication_slots': 20,
            'max_wal_senders': 20,
            'max_logical_replication_workers': 8,
            'max_worker_processes': 16,
            'fsync': 'off',
            'synchronous_commit': 'off',
            'full_page_writes': 'off',
            'shared_buffers': "'64MB'",
            'log_statement': "'all'",
            'log_min_messages': 'info',
            'wal_retrieve_retry_interval': "'500ms'",
        }
        with open(os.path.join(self.datadir, 'postgresql.auto.conf'), 'a') as f:
            for k, v in conf.items():
                f.write('%s = %s\n' % (k, v))
        _as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', self.logfile,
                      '-w', '-t', '60', 'start'])
        return self

    def stop(self, mode='fast'):
        try:
            _as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-m', mode,
                          '-w', 'stop'])
        except subprocess.CalledProcessError:
            pass

    def restart(self):
        _as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', self.logfile,
                      '-w', '-t', '60', 'restart'])

    def is_running(self):
        return os.path.exists(os.path.join(self.datadir, 'postmaster.pid'))

    # ---- client helpers -------------------------------------------------------------------
    def connect(self, dbname='postgres', autocommit=True):
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=dbname, connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def query(self, text, params=None, dbname='postgres'):
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(text, params)
                if cur.description is None:
                    return None
                return cur.fetchall()
        finally:
            conn.close()

    def execute(self, text, params=None, dbname='postgres'):
        self.query(text, params, dbname)

    def login(self, dbname='postgres'):
        """Connection options for the modules, as a dict."""
        return dict(login_host=self.host, login_port=self.port, login_user=self.user,
                    login_password=self.password, login_db=dbname)

    def log_text(self):
        with open(self.logfile, errors='replace') as f:
            return f.read()


def make_base():
    base = tempfile.mkdtemp(prefix='tablesync-it-')
    if os.geteuid() == 0:
        pw = pwd.getpwnam('postgres')
        os.chown(base, pw.pw_uid, pw.pw_gid)
    return base


def wait_for(predicate, timeout=60, interval=0.3, what='condition'):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError('timed out after %ss waiting for %s (last value: %r)' % (timeout, what, last))


def cleanup(base):
    shutil.rmtree(base, ignore_errors=True)
