#!/usr/bin/env bash
# fetch-runtime.sh LOCKFILE OUTDIR
#
# Fetch the npm packages pinned in LOCKFILE ("name version sha512-integrity"
# per line, '#' comments) and unpack each to OUTDIR/<name without scope>/,
# e.g. @electric-sql/pglite -> OUTDIR/pglite/package/...
#
# A tarball is taken from the download cache ($XDG_CACHE_HOME/pglite/npm or
# ~/.cache/pglite/npm) when its hash matches, else fetched with `npm pack`.
# Its sha512 must equal the pinned integrity; a mismatch is a hard error.
# A package whose OUTDIR/<dir>/.integrity stamp already matches is skipped,
# so a second run does no work and needs no network.
set -euo pipefail

die() { echo "fetch-runtime: error: $*" >&2; exit 1; }
note() { echo "fetch-runtime: $*"; }

[ $# -eq 2 ] || die "usage: $0 LOCKFILE OUTDIR"
lock=$1
out=$2
[ -r "$lock" ] || die "cannot read lock file $lock"
command -v openssl >/dev/null || die "openssl not found"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/pglite/npm
mkdir -p "$out"
tmproot=""
trap '[ -z "$tmproot" ] || rm -rf "$tmproot"' EXIT

sri_of() { # file -> sha512-<base64>
    printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

fetch_one() {
    local name=$1 version=$2 integrity=$3
    local dir=${name##*/}                        # drop the @scope/
    local tgzname
    tgzname=$(printf '%s-%s.tgz' "${name#@}" "$version" | tr '/' '-')
    local dest=$out/$dir

    if [ -f "$dest/.integrity" ] && [ -d "$dest/package" ] &&
       [ "$(cat "$dest/.integrity")" = "$integrity" ]; then
        return 0                                 # already unpacked
    fi

    [ -n "$tmproot" ] || tmproot=$(mktemp -d "$out/.fetch.XXXXXX")
    local tmp=$tmproot/$dir
    rm -rf "$tmp"
    mkdir -p "$tmp"

    local tgz=""
    if [ -f "$cache/$tgzname" ] && [ "$(sri_of "$cache/$tgzname")" = "$integrity" ]; then
        tgz=$cache/$tgzname
        note "$name@$version: from download cache"
    else
        command -v npm >/dev/null || die "npm not found (needed to fetch $name@$version)"
        note "$name@$version: npm pack"
        (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null) ||
            die "npm pack $name@$version failed"
        [ -f "$tmp/$tgzname" ] || tgzname=$(cd "$tmp" && ls -- *.tgz | head -n1)
        [ -n "$tgzname" ] && [ -f "$tmp/$tgzname" ] || die "npm pack produced no tarball"
        tgz=$tmp/$tgzname
        local got
        got=$(sri_of "$tgz")
        if [ "$got" != "$integrity" ]; then
            die "integrity mismatch for $name@$version:
  expected $integrity
  got      $got"
        fi
        # Best effort: keep the verified tarball for next time.
        if mkdir -p "$cache" 2>/dev/null && cp "$tgz" "$cache/.$tgzname.$$" 2>/dev/null; then
            mv -f "$cache/.$tgzname.$$" "$cache/$tgzname" || rm -f "$cache/.$tgzname.$$"
        fi
    fi
    # Re-check right before unpacking (the cached file could change under us).
    local got
    got=$(sri_of "$tgz")
    [ "$got" = "$integrity" ] || die "integrity mismatch for $name@$version:
  expected $integrity
  got      $got"

    mkdir "$tmp/unpack"
    tar -xzf "$tgz" -C "$tmp/unpack" --no-same-owner --no-same-permissions ||
        die "cannot unpack $tgz"
    [ -d "$tmp/unpack/package" ] || die "$tgz has no package/ directory"
    printf '%s\n' "$integrity" > "$tmp/unpack/.integrity"
    rm -rf "$dest"
    mv "$tmp/unpack" "$dest"
    note "$name@$version: unpacked to $dest"
}

n=0
while read -r name version integrity rest; do
    case $name in ''|'#'*) continue ;; esac
    [ -n "$version" ] && [ -n "$integrity" ] || die "$lock: malformed line for $name"
    [ -z "$rest" ] || die "$lock: extra fields on the line for $name"
    case $integrity in sha512-*) ;; *) die "$lock: $name: integrity must be sha512-..." ;; esac
    case $version in *[!0-9A-Za-z.+-]*) die "$lock: $name: not an exact version: $version" ;; esac
    fetch_one "$name" "$version" "$integrity"
    n=$((n + 1))
done < "$lock"
[ "$n" -gt 0 ] || die "$lock lists no packages"
