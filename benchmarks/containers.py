"""Throw-away systemd + PostgreSQL containers for the benchmarks (podman, real hosts).

The containers run the project's image (scripts/build-image.sh) with systemd as PID 1 like the
Molecule scenarios (``--systemd=always``, command ``/sbin/init``), so PostgreSQL runs as the
real ``postgresql@<version>-main`` service. Ansible reaches them with the
``containers.podman.podman`` connection; the sync sets use their IP addresses (``podman
inspect``). Every container is named ``tablesync-bench-<name>`` and removed by ``stop()``, which
the ``with`` statement calls even when the benchmark fails or is interrupted (SIGTERM too).

    with BenchContainers(['pub', 'sub1', 'sub2']) as hosts:
        hosts.psql('pub', 'SELECT 1')
        hosts.ip('pub')
"""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = 'tablesync-bench-'
IMAGE = 'localhost/tablesync-pg:bookworm'


def podman_env():
    env = dict(os.environ)
    env.setdefault('CONTAINERS_CONF', os.path.join(ROOT, 'tests', 'containers', 'containers.conf'))
    return env


def podman(*args, **kwargs):
    """Run ``podman ARGS``; returns stdout (raises with stderr on failure unless check=False)."""
    check = kwargs.pop('check', True)
    proc = subprocess.run(('podman',) + args, env=podman_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('podman %s failed (rc %d): %s'
                           % (' '.join(args[:3]), proc.returncode, proc.stderr.strip()))
    return proc.stdout


class _Terminated(Exception):
    pass


def _on_sigterm(signum, _frame):
    # once: a second SIGTERM (a process group kill plus a forwarding parent such as timeout)
    # must not interrupt the clean-up the first one starts
    signal.signal(signum, signal.SIG_IGN)
    raise _Terminated('SIGTERM')


class BenchContainers:
    """``names`` -> containers ``tablesync-bench-<name>`` from ``image``."""

    def __init__(self, names, image=IMAGE, boot_timeout=120, log_dir=None):
        self.names = list(names)
        self.log_dir = log_dir  # the servers' logs are copied there when the run fails
        self.image = image
        self.boot_timeout = boot_timeout
        self._ips = {}
        self._old_sigterm = None

    def container(self, name):
        return PREFIX + name

    def __enter__(self):
        self._old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.log_dir:
            self.save_logs(self.log_dir)
        self.stop()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
        return False

    def start(self):
        self.stop()  # left over from an interrupted run
        for name in self.names:
            for attempt in range(3):
                try:
                    podman('run', '-d', '--name', self.container(name), '--hostname', name,
                           '--systemd=always', self.image, '/sbin/init')
                    break
                except RuntimeError:
                    # podman's storage sometimes fails a run while other podman commands run
                    # at the same time: remove what is left and try again
                    podman('rm', '--force', '--time', '0', self.container(name), check=False)
                    if attempt == 2:
                        raise
                    time.sleep(5)
        deadline = time.time() + self.boot_timeout
        for name in self.names:
            while True:
                state = podman('exec', self.container(name), 'systemctl', 'is-system-running',
                               '--wait', check=False).strip()
                ready = subprocess.run(
                    ['podman', 'exec', self.container(name), 'pg_isready', '-q', '-t', '5'],
                    env=podman_env(), check=False).returncode == 0
                if state in ('running', 'degraded') and ready:
                    break
                if time.time() > deadline:
                    raise RuntimeError('%s did not boot (systemd: %s)' % (name, state))
                time.sleep(1)
            self._ips[name] = podman('inspect', '--format', '{{.NetworkSettings.IPAddress}}',
                                     self.container(name)).strip()
        return self

    def stop(self):
        """Remove every container of this set (those that exist)."""
        for name in self.names:
            podman('rm', '--force', '--time', '0', self.container(name), check=False)

    def save_logs(self, directory):
        """Copy each server's PostgreSQL log to ``directory`` (best effort)."""
        for name in self.names:
            out = podman('exec', self.container(name), 'sh', '-c',
                         'cat /var/log/postgresql/postgresql-*-main.log', check=False)
            path = os.path.join(directory, '%s-postgresql.log' % name)
            with open(path, 'w') as f:
                f.write(out)
            print('server log of %s: %s' % (name, path), file=sys.stderr)

    def ip(self, name):
        return self._ips[name]

    def exec(self, name, argv, stdin=None, user=None, check=True):
        args = ['exec', '-i'] + (['--user', user] if user else []) + [self.container(name)]
        return podman(*(args + list(argv)), input=stdin, check=check)

    def psql(self, name, sql, dbname='postgres'):
        """Run SQL as the postgres superuser (peer authentication) and return its output lines
        (unaligned, tuples only)."""
        out = self.exec(name, ['psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', dbname],
                        stdin=sql, user='postgres')
        return out.splitlines()

    def server_version(self, name):
        return self.psql(name, 'SHOW server_version')[0]

    def inventory_hosts(self):
        """Host entries for an Ansible inventory (podman connection, address from inspect)."""
        return dict((self.container(name), {
            'ansible_connection': 'containers.podman.podman',
            'ansible_python_interpreter': '/usr/bin/python3',
            'tablesync_address': self.ip(name),
        }) for name in self.names)


def ansible_env(extra=None):
    """Environment for ansible-playbook from the checkout: the venv, this collection
    (.cache/collections, linked by ./dev setup) and containers.podman from the venv."""
    env = podman_env()
    env.update({
        'PATH': os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''),
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.cache', 'collections'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
    })
    env.pop('ANSIBLE_CONFIG', None)
    env.update(extra or {})
    return env


def inventory_yaml(hosts, variables):
    """An inventory (YAML text): ``hosts`` (BenchContainers) in group postgresql, ``variables``
    for all."""
    import yaml  # ansible's dependency, in the venv
    data = {'all': {'children': {'postgresql': {'hosts': hosts.inventory_hosts()}},
                    'vars': variables}}
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
