"""Helpers for the scenario tests (molecule/logical_change and molecule/methods link to this file)."""

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
