#!/usr/bin/env bash
# native-pg18.sh: print the bin directory of a native PostgreSQL 18, built
# once from Debian's postgresql-18 source package and kept in the project's
# cache ($PGLITE_CACHE_DIR, else $XDG_CACHE_HOME/pglite, else
# ~/.cache/pglite) as native/postgresql-<version>/. The benchmarks compare
# pglite-c with it engine to engine: the same major version, so the same
# planner, as the PGlite runtime's PostgreSQL. The tests use its pg_restore
# (tests/integration/test_dump_cli.sh): the one that reads pg_dump 18's
# archives.
#
# Debian 12 ships PostgreSQL 15 only, so the source package comes from the
# Debian suite that has postgresql-18 (sid), through a private deb-src list
# and package cache: the machine's apt configuration is not touched. The
# build runs at the lowest CPU priority; everything is made in a temporary
# directory and renamed into place when complete, so an interrupted build
# is never used. Progress goes to stderr; only the path goes to stdout.
set -euo pipefail

die() { echo "native-pg18: error: $*" >&2; exit 1; }
note() { echo "native-pg18: $*" >&2; }

SUITE=${PGLITE_NATIVE_SUITE:-sid}
cache=${PGLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pglite}
root=$cache/native
mkdir -p "$root" || die "cannot create $root"

# A finished build: native/postgresql-18.*/.complete (newest first).
for d in $(ls -d "$root"/postgresql-18.* 2>/dev/null | sort -rV); do
    if [ -f "$d/.complete" ] && [ -x "$d/bin/postgres" ]; then
        echo "$d/bin"
        exit 0
    fi
done

# PostgreSQL 17+ release tarballs no longer carry the generated parsers.
"$(dirname "$0")/../tools/build/install-deps.sh" dpkg-dev build-essential bison flex >&2 ||
    die "cannot install the build dependencies"

work=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$work/src"
cat >"$apt_dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main
EOF
APT=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
     -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::archives=$apt_dir/archives"
     -o "APT::Sandbox::User=root")
note "fetching the postgresql-18 source package (Debian $SUITE)"
apt-get "${APT[@]}" -qq update >&2 || die "apt-get update of the $SUITE source list failed"
(cd "$work/src" && apt-get "${APT[@]}" -qq source --download-only postgresql-18 >&2) ||
    die "apt-get source postgresql-18 failed"
dsc=$(ls "$work/src"/postgresql-18_*.dsc 2>/dev/null | head -n1)
[ -n "$dsc" ] || die "no postgresql-18 .dsc was downloaded"
(cd "$work/src" && dpkg-source --no-check -x "$dsc" pg >/dev/null) || die "dpkg-source -x failed"
version=$(sed -n 's/^PACKAGE_VERSION=.\([0-9.]*\).*/\1/p' "$work/src/pg/configure" | head -n1)
[ -n "$version" ] || die "cannot read the version from configure"
dest=$root/postgresql-$version
note "building PostgreSQL $version into $dest (a few minutes at nice 19)"
jobs=$(nproc 2>/dev/null || echo 2)
(
    cd "$work/src/pg"
    # Plain release build: no ICU/readline/zlib dependencies (the benchmarks
    # use the C locale and no compression), no debug assertions.
    nice -n 19 ./configure --prefix="$dest" --without-icu --without-readline \
        --without-zlib >"$work/configure.log" 2>&1 ||
        { tail -n 30 "$work/configure.log" >&2; exit 1; }
    nice -n 19 make -j"$jobs" -s >"$work/make.log" 2>&1 ||
        { tail -n 30 "$work/make.log" >&2; exit 1; }
    make -s install DESTDIR="$work/inst" >"$work/install.log" 2>&1 ||
        { tail -n 30 "$work/install.log" >&2; exit 1; }
) || die "the build failed"
"$work/inst$dest/bin/postgres" --version >&2 || die "the built postgres does not run"
touch "$work/inst$dest/.complete"
rm -rf "$dest"
mv "$work/inst$dest" "$dest" || die "cannot move the build to $dest"
echo "$dest/bin"
