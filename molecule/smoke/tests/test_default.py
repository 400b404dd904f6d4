"""Testinfra checks for the smoke scenario (hosts come from molecule's inventory)."""

import os

import testinfra.utils.ansible_runner

# Host names come from molecule's inventory; the checks run through testinfra's podman
# backend (`podman exec`, ~0.1 s a command) rather than the default ansible backend that
# molecule selects (one ansible run, ~2 s, per command). CONTAINERS_CONF comes from the env.
testinfra_hosts = [
    f"podman://{name}"
    for name in testinfra.utils.ansible_runner.AnsibleRunner(
        os.environ["MOLECULE_INVENTORY_FILE"]
    ).get_hosts("all")
]


def _pg_version(host):
    """The cluster's major version, read from the host (no codename map)."""
    return host.check_output("ls /etc/postgresql").split()[0]


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_postgresql_service_running(host):
    service = host.service(f"postgresql@{_pg_version(host)}-main")
    assert service.is_running
    assert service.is_enabled


def test_postgresql_listens_locally(host):
    assert host.socket("tcp://127.0.0.1:5432").is_listening


def test_postgresql_answers(host):
    out = host.check_output("runuser -u postgres -- psql -Atc 'SHOW server_version_num'")
    assert out.startswith(_pg_version(host))
