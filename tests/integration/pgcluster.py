"""Throw-away PostgreSQL clusters on free loopback ports, for the integration tests.

Each cluster runs under the ``postgres`` OS user (initdb refuses root), listens on 127.0.0.1
and its own socket directory, has ``wal_level = logical`` and logs every statement (so the
tests can prove passwords never reach the server log in clear text when we did not send them).

The servers are the host's newest PostgreSQL, or, with ``TABLESYNC_IT_IMAGE`` set to a test
image (``localhost/tablesync-pg:sid``: PostgreSQL 18), that image's server binaries run in one
container per test process. The container shares the host's network (the servers still listen
on 127.0.0.1) and the clusters' base directory (same path inside), so sockets, logs and data
directories are where the tests look for them; clients (psql, the modules) stay on the host.
"""
import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg2

SUPERUSER = 'postgres'
SUPERPASS = 'It-super-S3cret'


IMAGE = os.environ.get('TABLESYNC_IT_IMAGE', '')


def host_bindir():
    """The host's newest PostgreSQL binaries (clients; the servers too without an image)."""
    candidates = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'),
                        key=lambda p: int(p.split('/')[4]))
    if not candidates:
        raise RuntimeError('no PostgreSQL server binaries under /usr/lib/postgresql; '
                           'run scripts/bootstrap.sh')
    return os.path.dirname(candidates[-1])


def pg_bindir():
    override = os.environ.get('PG_BINDIR')
    if override:
        return override
    if IMAGE:
        return ServerContainer.get().bindir
    return host_bindir()


class ServerContainer(object):
    """The container that runs this test process's servers (``TABLESYNC_IT_IMAGE``)."""
    _instance = None

    def __init__(self, mounts):
        self.name = 'tablesync-it-%d' % os.getpid()
        subprocess.run(['podman', 'rm', '-f', '-t', '0', self.name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        volumes = []
        for path in mounts:
            volumes += ['-v', '%s:%s' % (path, path)]
        subprocess.run(['podman', 'run', '-d', '--name', self.name, '--network', 'host',
                        '--shm-size', '1g', '--systemd', 'false'] + volumes
                       + ['--entrypoint', 'sleep', IMAGE, 'infinity'],
                       check=True, stdout=subprocess.DEVNULL)
        atexit.register(self.remove)
        versions = self.run(['ls', '/usr/lib/postgresql']).split()
        newest = max(versions, key=int)
        self.bindir = '/usr/lib/postgresql/%s/bin' % newest
        ids = self.run(['id', '-u', 'postgres']) + self.run(['id', '-g', 'postgres'])
        self.uid, self.gid = [int(x) for x in re.findall(r'\d+', ids)]

    @classmethod
    def get(cls):
        if cls._instance is None:
            # every base directory is made under this one, mounted once
            cls._instance = cls([BASE_ROOT])
        return cls._instance

    def run(self, cmd, user='root', **kw):
        return subprocess.run(['podman', 'exec', '-u', user, self.name] + cmd, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, **kw).stdout

    def remove(self):
        subprocess.run(['podman', 'rm', '-f', '-t', '0', self.name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


# Parent of the clusters' base directories (mounted into the server container when there is one).
BASE_ROOT = os.path.join(tempfile.gettempdir(), 'tablesync-it-%d' % os.getpid())


def postgres_ids():
    """uid, gid of the OS user that runs the servers (the container's postgres with an image)."""
    if IMAGE:
        server = ServerContainer.get()
        return server.uid, server.gid
    pw = pwd.getpwnam('postgres')
    return pw.pw_uid, pw.pw_gid


def server_command(cmd):
    """argv that runs ``cmd`` (a server binary) as the servers' postgres user."""
    if IMAGE:
        return ['podman', 'exec', '-u', 'postgres', ServerContainer.get().name] + cmd
    if os.geteuid() == 0:
        return ['runuser', '-u', 'postgres', '--'] + cmd
    return cmd


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_postgres(cmd, **kw):
    return subprocess.run(server_command(cmd), check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kw)


class Cluster(object):
    def __init__(self, name, base):
        self.name = name
        self.bindir = pg_bindir()
        self.client_bindir = host_bindir()
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
            uid, gid = postgres_ids()
            for path in (self.sockdir, pwfile):
                os.chown(path, uid, gid)
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

    def restart_command(self):
        """Shell command that restarts the server (the roles' restart command)."""
        return ' '.join(server_command([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir,
                                        '-l', self.logfile, '-w', '-t', '60', '-m', 'fast',
                                        'restart']))

    def version(self):
        return int(self.query('SHOW server_version_num')[0][0]) // 10000

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
    os.makedirs(BASE_ROOT, exist_ok=True)
    base = tempfile.mkdtemp(prefix='base-', dir=BASE_ROOT)
    if os.geteuid() == 0:
        for path in (BASE_ROOT, base):
            os.chown(path, *postgres_ids())
    if IMAGE:
        # the host's postgres user (the roles' become user) reaches the sockets through it
        os.chmod(base, 0o711)
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
    try:
        os.rmdir(BASE_ROOT)
    except OSError:
        pass
