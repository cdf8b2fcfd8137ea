#!/usr/bin/env bash
# Once per checkout: a virtualenv in .venv with pytest, and the tasker_core package of a Tasker
# checkout linked into it (a .pth file, like an editable install).
#
#   TASKER_SOURCE=/path/to/tasker bin/setup     # default: {{tasker_source}}
#
# The package must have been built there first: `scripts/build-packages.sh` in that checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
source="${TASKER_SOURCE:-{{tasker_source}}}"
package="$source/bindings-python/python"
if ! compgen -G "$package/tasker_core/_native*.so" >/dev/null; then
  echo "bin/setup: no built tasker_core under $package" >&2
  echo "  run scripts/build-packages.sh in $source, or point TASKER_SOURCE at a checkout where it ran" >&2
  exit 1
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "pytest>=7"
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$package" >"$site/tasker_core_local.pth"
.venv/bin/python -c 'import tasker_core' || {
  echo "bin/setup: tasker_core does not import from $package" >&2
  exit 1
}
echo "ready: .venv uses tasker_core from $package"
