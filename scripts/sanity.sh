#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection placed where ansible-test wants it
# (.../ansible_collections/tablesync/postgresql). Only files tracked by git are copied, so the
# result is what CI sees. Extra args go to ansible-test (e.g. --test validate-modules).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# A private copy per run, so concurrent runs do not pull the tree from under each other.
mkdir -p "$ROOT/.cache"
WORKDIR="$(mktemp -d "$ROOT/.cache/sanity.XXXXXX")"
trap 'rm -rf "$WORKDIR"' EXIT
DEST="$WORKDIR/ansible_collections/tablesync/postgresql"
mkdir -p "$DEST"
cd "$ROOT"
# tracked + new (not ignored) files, as they are in the work tree
git ls-files -z --cached --others --exclude-standard | \
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | \
  rsync -a --from0 --files-from=- "$ROOT/" "$DEST/"
cd "$DEST"
git init -q . && git add -A >/dev/null 2>&1 && git -c user.name=ci -c user.email=ci@localhost commit -qm sanity >/dev/null
# ansible-test bootstraps pip in its venvs with a script from ci-files.testing.ansible.com,
# unreachable here: give it an offline stand-in under the name it caches the script as.
PIPVER="$("$ROOT/.venv/bin/python" -c 'from ansible_test._internal.python_requirements import PIP_VERSION as v; print(v)' 2>/dev/null || echo 24.2)"
mkdir -p ~/.ansible/test/cache
cp "$ROOT/tests/sanity_get_pip.py" ~/.ansible/test/cache/"get_pip_${PIPVER//./_}.py"
PY="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$ROOT/.venv/bin/ansible-test" sanity --venv --requirements --python "$PY" --color no "$@"
