"""Helpers for the scenario tests (molecule/logical_change and molecule/methods link to this file)."""

import json
import os
import re
import subprocess
import time

import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def hosts():
    return testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")


def connect(name):
    return testinfra.get_host(f"podman://{name}")


def psql(host, db, sql):
    """Run SQL as postgres through the Unix socket, return stdout (unaligned, tuples only)."""
    return host.check_output("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s",
                             db, sql)


def wait_for(check, timeout=60, interval=0.5):
    """Poll check() until it returns a truthy value; return it, or the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run_site(*args, extra_env=None):
    """Run the scenario's converge playbook (playbooks/site.yml) against the molecule inventory.

    Returns (returncode, output, {host: {ok, changed, failed, ...}}) from the play recap.
    """
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    env = dict(os.environ)
    config = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "ansible.cfg")
    if os.path.exists(config):
        env["ANSIBLE_CONFIG"] = config
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    env.update(extra_env or {})
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.path.dirname(INVENTORY),
         os.path.join(scenario, "converge.yml"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
        check=False)
    recap = {}
    for line in ANSI.sub("", proc.stdout).splitlines():
        m = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return proc.returncode, proc.stdout, recap


def run_playbook(name, *args, extra_env=None):
    """Run one of the collection's playbooks (playbooks/<name>) against the molecule inventory,
    with the default stdout callback printing results as JSON (parsed by task_messages).

    Returns (returncode, output without colours).
    """
    root = os.path.abspath(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", ".."))
    env = dict(os.environ)
    config = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "ansible.cfg")
    if os.path.exists(config):
        env["ANSIBLE_CONFIG"] = config
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    env.update(extra_env or {})
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.path.dirname(INVENTORY),
         os.path.join(root, "playbooks", name), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
        check=False)
    return proc.returncode, ANSI.sub("", proc.stdout)


def task_messages(output, task):
    """The lines of the list-valued "msg" a task printed (first host), [] when it printed none."""
    start = output.find(f"TASK [{task}]")
    if start < 0:
        return []
    m = re.search(r'"msg": \[\n(.*?)\n\s*\]', output[start:], re.S)
    if not m:
        return []
    return [json.loads(line.strip().rstrip(",")) for line in m.group(1).splitlines() if line.strip()]


def prom_samples(text):
    """Samples of a Prometheus text file: {(metric, frozenset of (label, value)): float}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def pg_version(host):
    """The major version of the host's cluster, read from the host (no codename map)."""
    return host.check_output("ls /etc/postgresql").split()[0]


def pg_unit(host):
    """The systemd unit of the host's cluster, e.g. postgresql@17-main."""
    return f"postgresql@{pg_version(host)}-main"


def check_table(*args):
    """playbooks/check.yml -> (returncode, output, {(set, target host, database): row cells},
    breaches); rows of both directions of a bidirectional set differ by their target."""
    rc, out = run_playbook("check.yml", *args)
    table = task_messages(out, "Show every sync set")
    assert table and table[0].split()[:2] == ["SET", "METHOD"], out[-6000:]
    rows = {}
    for line in table[1:]:
        m = re.match(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*)$", line)
        assert m, line
        rows[(m.group(1), m.group(4), m.group(5))] = {
            "method": m.group(2), "source": m.group(3), "state": m.group(6),
            "lag_bytes": m.group(7), "lag_seconds": m.group(8), "errors": m.group(9),
            "schema": m.group(10), "rest": m.group(11), "line": line}
    breaches = task_messages(out, "Fail when a threshold is crossed") if rc else []
    return rc, out, rows, breaches


def failures(output, context=12):
    """The failed tasks of a playbook run (their TASK line and the lines after "fatal:" or
    "failed:"), for assertion messages that show why instead of the run's last lines."""
    lines = ANSI.sub("", output).splitlines()
    found = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*(fatal|failed): \[", line):
            task = next((lines[j] for j in range(i, -1, -1) if lines[j].startswith("TASK [")), "")
            found.append("\n".join([task] + lines[i:i + context]))
    return "\n---\n".join(found) or output[-6000:]
