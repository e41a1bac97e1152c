#!/usr/bin/env bash
# install-deps.sh PACKAGE...
#
# Install the Debian packages that are missing. Checks with dpkg-query first
# and touches apt (update + install) only when something is missing, so it
# is instant on a ready machine. nodejs/npm also count as present when their
# commands exist (NodeSource's nodejs bundles npm, which then has no Debian
# package of its own).
set -euo pipefail

have() {
    case $1 in
        npm) command -v npm >/dev/null && return 0 ;;
        nodejs) command -v node >/dev/null && return 0 ;;
    esac
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q ' ok installed$'
}

command -v dpkg-query >/dev/null || {
    echo "deps: not a Debian system; install these yourself: $*" >&2
    exit 0
}
missing=()
for p in "$@"; do
    have "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
