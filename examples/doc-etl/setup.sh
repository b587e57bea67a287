#!/bin/sh
# Create the local git repository work/source-repo from the shipped documents in docs/.
# It stands in for the seed's GitLab project; the pipeline's `checkout` stage clones it.
#
#   sh examples/doc-etl/setup.sh        (works from any directory)
#
# The commit is deterministic: fixed author, committer and dates, so the same docs/
# always give the same commit id. Running it again recreates the repository (a
# changed docs/ gives a new commit; `checkout` follows it). work/checkout and the
# other outputs are left alone, so a re-run of the pipeline shows the checkpoints.
# Needs git (Debian/Ubuntu: apt-get install git).
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$here"

if ! command -v git >/dev/null 2>&1; then
    echo "setup: git is not installed (Debian/Ubuntu: apt-get install git)" >&2
    exit 1
fi

repo=work/source-repo
rm -rf "$repo"
mkdir -p "$repo"
cp -R docs/. "$repo/"

GIT_AUTHOR_NAME="Doc ETL Example"
GIT_AUTHOR_EMAIL="doc-etl@example.invalid"
GIT_AUTHOR_DATE="2024-01-15T09:00:00+00:00"
GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME"
GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
GIT_COMMITTER_DATE="$GIT_AUTHOR_DATE"
export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_AUTHOR_DATE GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL GIT_COMMITTER_DATE

git -c init.defaultBranch=main init --quiet "$repo"
git -C "$repo" -c core.autocrlf=false -c core.fileMode=false add --all
git -C "$repo" -c user.name="$GIT_AUTHOR_NAME" -c user.email="$GIT_AUTHOR_EMAIL" -c commit.gpgsign=false \
    commit --quiet --no-verify -m "Import the platform handbook"

echo "setup: $repo: $(git -C "$repo" ls-files | wc -l | tr -d ' ') documents, commit $(git -C "$repo" rev-parse --short HEAD)"
echo "setup: now run the pipeline, e.g. from the repository root: swift run sluice run examples/doc-etl/pipeline.yml"
