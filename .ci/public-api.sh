#!/usr/bin/env bash
# The public API, item by item (every public struct, enum, trait, function, constant, type and
# module, by path, with every feature), from rustdoc's item index. `docs/public-api.txt` holds it,
# so that a change to the public API shows in review; `.ci/run` fails when it is stale.
#   bash .ci/public-api.sh          print the list
#   bash .ci/public-api.sh --write  rewrite docs/public-api.txt
#   bash .ci/public-api.sh --check  fail if docs/public-api.txt differs
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}" cargo doc --no-deps --all-features --quiet
index="${CARGO_TARGET_DIR:-target}/doc/harbormaster/all.html"
grep -o 'href="[a-z_/]*[a-z]*\.[A-Za-z0-9_]*\.html"' "$index" \
  | sed -E 's/^href="//; s/\.html"$//' \
  | awk -F/ '{ item=$NF; n=split(item, p, "."); kind=p[1]; name=p[2];
               path="harbormaster"; for (i = 1; i < NF; i++) path = path "::" $i;
               print kind " " path "::" name }' \
  | sort -u > "$dir/api.txt"
case "${1:-}" in
  --write) cp "$dir/api.txt" docs/public-api.txt; echo "public-api: $(wc -l < docs/public-api.txt) items written" ;;
  --check)
    if ! diff -u docs/public-api.txt "$dir/api.txt"; then
      echo "public-api: the public API changed; review it and run: bash .ci/public-api.sh --write"; exit 1
    fi
    echo "public-api: $(wc -l < docs/public-api.txt) items, as listed" ;;
  *) cat "$dir/api.txt" ;;
esac
