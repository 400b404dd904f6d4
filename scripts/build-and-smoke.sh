#!/usr/bin/env bash
# Build the collection tarball, install it into a throw-away path and run a module from the
# installed copy (not from the work tree) to prove the artifact is complete.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.cache/build"
rm -rf "$OUT"; mkdir -p "$OUT/dist" "$OUT/installed"
cd "$ROOT"
ansible-galaxy collection build --force --output-path "$OUT/dist" >/dev/null
TARBALL="$(ls "$OUT"/dist/tablesync-postgresql-*.tar.gz)"
echo "built $(basename "$TARBALL") ($(du -k "$TARBALL" | cut -f1) kB)"
if tar -tzf "$TARBALL" | grep -E '^(tests|molecule|scripts|\.ci|\.venv|\.cache)/' ; then
  echo "tarball contains files that build_ignore should exclude" >&2; exit 1
fi
ansible-galaxy collection install --force -p "$OUT/installed" "$TARBALL" >/dev/null
# The installed copy must be the one that answers: only its path is on ANSIBLE_COLLECTIONS_PATH.
ANSIBLE_COLLECTIONS_PATH="$OUT/installed" ansible-doc tablesync.postgresql.pg_publication >/dev/null
ANSIBLE_COLLECTIONS_PATH="$OUT/installed" ANSIBLE_STDOUT_CALLBACK=ansible.builtin.minimal \
  ansible localhost -c local -e "ansible_python_interpreter=$ROOT/.venv/bin/python" \
  -m tablesync.postgresql.pg_publication -a 'name=x login_host=127.0.0.1 login_port=1 connect_timeout=1' \
  > "$OUT/run.txt" 2>&1 || true
# A connection error proves the module was found, imported its module_utils and ran.
grep -q 'Unable to connect to PostgreSQL' "$OUT/run.txt" || { cat "$OUT/run.txt"; exit 1; }
echo "installed collection runs its modules"
