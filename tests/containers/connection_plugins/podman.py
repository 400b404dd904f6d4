# Test-only: the containers.podman connection with Ansible pipelining.
#
# The stock plugin runs `podman exec` without -i, so it cannot pipe a module to the remote
# Python (has_pipelining = False): every task then costs a `podman mount`, a temporary
# directory, a file copy, a chmod, the run and a cleanup, about six podman processes. This
# subclass passes the module on stdin (`podman exec -i`), mounts nothing and writes files
# through a shell in the container (no `podman cp`, which pauses it): one podman process per
# task, the way SSH runs with pipelining on a production inventory.
# scripts/molecule.sh sets ANSIBLE_CONNECTION_PLUGINS to this directory, so the short name
# `podman` of Molecule's inventories resolves here, and ANSIBLE_PIPELINING=True.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
    name: podman
    short_description: The containers.podman connection, with pipelining (tests only)
    description:
      - Run commands in an existing podman container; modules are piped to the remote Python.
    extends_documentation_fragment:
      - connection_pipelining
    options:
      remote_addr:
        description: The ID of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments to pass to the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
"""

import shlex

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ensure_connect
from ansible.utils.display import Display
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

display = Display()


class Connection(PodmanConnection):
    """containers.podman.podman plus pipelining: stdin is passed with `podman exec -i`."""

    has_pipelining = True

    def _connect(self):
        # no `podman mount` per task: put_file and fetch_file go through a shell in the container
        self._connected = True

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super(Connection, self).exec_command(cmd, in_data=None, sudoable=sudoable)
        return self._podman(["exec", "-i"] + self._exec_user(), shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def _exec_user(self):
        return ["--user", self.user] if self.user else []

    @ensure_connect
    def put_file(self, in_path, out_path):
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._container_id)
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as f:
            data = f.read()
        rc, _out, err = self._podman(["exec", "-i"] + self._exec_user(),
                                     ["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], data)
        if rc != 0:
            raise AnsibleError("failed to write %s in container %s: %s" % (out_path, self._container_id, to_native(err)))

    @ensure_connect
    def fetch_file(self, in_path, out_path):
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._container_id)
        rc, out, err = self._podman(["exec"] + self._exec_user(), ["/bin/cat", in_path])
        if rc != 0:
            raise AnsibleError("failed to read %s in container %s: %s" % (in_path, self._container_id, to_native(err)))
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as f:
            f.write(out)
