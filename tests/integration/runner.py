"""Run the collection's modules for real, through ansible-playbook, and parse the results.

``run_tasks(tasks)`` writes a one-play playbook for localhost, runs it with the
``ansible.posix.json`` callback and returns a ``PlaybookRun`` with per-task results, the
raw output, and the return code. Every run also keeps its full stdout/stderr so tests can
assert that secrets never appear in them.
"""
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
BINDIR = os.path.dirname(sys.executable)


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_HOST_KEY_CHECKING': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_DEPRECATION_WARNINGS': 'false',
        'PATH': BINDIR + os.pathsep + env.get('PATH', ''),
    })
    for k in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE'):
        env.pop(k, None)
    env.update(extra or {})
    return env


class PlaybookRun(object):
    def __init__(self, rc, stdout, stderr, results):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.results = results  # list of per-task result dicts for localhost, in order

    @property
    def output(self):
        return self.stdout + self.stderr

    def __getitem__(self, i):
        return self.results[i]

    @property
    def last(self):
        return self.results[-1]


def _parse_json_callback(stdout):
    start = stdout.find('{')
    data = json.loads(stdout[start:])
    results = []
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            host_result = task.get('hosts', {}).get('localhost', {})
            host_result = dict(host_result)
            host_result['_task'] = task.get('task', {}).get('name')
            results.append(host_result)
    return results


def run_tasks(tasks, check=False, diff=False, verbosity=0, callback='ansible.posix.json',
              extra_env=None, module_defaults=None, timeout=900):
    play = {
        'name': 'integration',
        'hosts': 'localhost',
        'connection': 'local',
        'gather_facts': False,
        'vars': {'ansible_python_interpreter': sys.executable},
        'tasks': tasks,
    }
    if module_defaults:
        play['module_defaults'] = module_defaults
    with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as f:
        yaml.safe_dump([play], f, sort_keys=False, allow_unicode=True)
        path = f.name
    cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', 'localhost,', path]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    if verbosity:
        cmd.append('-' + 'v' * verbosity)
    env = ansible_env(extra_env)
    if callback:
        env['ANSIBLE_STDOUT_CALLBACK'] = callback
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, check=False)
    finally:
        os.unlink(path)
    results = []
    if callback == 'ansible.posix.json':
        try:
            results = _parse_json_callback(proc.stdout)
        except ValueError:
            raise AssertionError('could not parse ansible-playbook output:\n%s\n%s'
                                 % (proc.stdout, proc.stderr))
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def run_module(module, args, **kw):
    """Run one module task (ignore_errors so failures come back as results)."""
    task = {'name': module, module: args, 'ignore_errors': True}
    run = run_tasks([task], **kw)
    assert run.results, 'no task result:\n%s\n%s' % (run.stdout, run.stderr)
    result = run.results[0]
    result['_run'] = run
    return result


def run_playbook(playbook, inventory, *extra, timeout=600):
    """``ansible-playbook -i <inventory dict as a temporary YAML file> playbook extra...`` with the
    default callback: ``(returncode, output)``, stderr folded into the output."""
    with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as f:
        yaml.safe_dump(inventory, f)
        path = f.name
    try:
        env = ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.default'})
        proc = subprocess.run([os.path.join(BINDIR, 'ansible-playbook'), '-i', path, playbook]
                              + list(extra), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout,
                              check=False)
    finally:
        os.unlink(path)
    return proc.returncode, proc.stdout
