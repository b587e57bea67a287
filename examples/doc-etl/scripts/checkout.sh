#!/bin/sh
# Stage `checkout` (seed 002: GitLab ingestion).
# Clone SOURCE into DEST, or bring an existing clone up to date.
#
#   sh scripts/checkout.sh SOURCE DEST
#
# An existing clone is updated with fetch + reset --hard (not pull --ff-only), so it
# also follows a source repository that was recreated with a different history.
# git only rewrites files whose content changed, which keeps unchanged files as they are.
#
# Exit codes: 0 ok; 66 the source repository does not exist (permanent: not retried);
# 75 a git command failed (possibly transient: the pipeline retries exit code 75).
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: sh scripts/checkout.sh SOURCE DEST" >&2
    exit 64
fi
src=$1
dest=$2

if ! command -v git >/dev/null 2>&1; then
    echo "checkout: git is not installed (Debian/Ubuntu: apt-get install git)" >&2
    exit 66
fi
if [ ! -d "$src" ] || ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    echo "checkout: source repository '$src' does not exist; run setup.sh first (sh examples/doc-etl/setup.sh)" >&2
    exit 66
fi
# an absolute URL, so the clone's origin does not depend on the working directory
src_abs=$(CDPATH= cd -- "$src" && pwd)

if [ -d "$dest/.git" ]; then
    echo "checkout: updating $dest from $src"
    before=$(git -C "$dest" rev-parse HEAD 2>/dev/null || echo none)
    git -C "$dest" fetch --quiet "$src_abs" HEAD || { echo "checkout: git fetch from $src failed" >&2; exit 75; }
    git -C "$dest" reset --quiet --hard FETCH_HEAD || { echo "checkout: git reset in $dest failed" >&2; exit 75; }
    after=$(git -C "$dest" rev-parse HEAD)
    if [ "$before" = "$after" ]; then
        echo "checkout: already up to date"
    else
        echo "checkout: moved from $before to $after"
    fi
else
    echo "checkout: cloning $src into $dest"
    rm -rf "$dest"
    mkdir -p "$(dirname -- "$dest")"
    git clone --quiet "$src_abs" "$dest" || { echo "checkout: git clone of $src failed" >&2; exit 75; }
fi

commit=$(git -C "$dest" log -1 --format='%H %s')
echo "checkout: at commit $commit"
echo "::count:: files $(git -C "$dest" ls-files | wc -l | tr -d ' ')"
