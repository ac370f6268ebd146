#!/usr/bin/env bash
# govulncheck without vuln.go.dev: this project's machines reach the Go
# module proxy but not vuln.go.dev, and the proxy serves the vulnerability
# database itself as the module golang.org/x/vulndb (its data/osv holds the
# OSV reports). Build govulncheck's file:// database from a pinned snapshot
# once, cache it outside the clone, and scan against it. Bump VULNDB_VERSION
# to pick up newer reports.
set -euo pipefail
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
cache_root=${CCBOOT_VULNDB_CACHE:-/var/cache/ccboot-vulndb}
db=$cache_root/$VULNDB_VERSION
here=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -f "$db/index/db.json" ]; then
  echo "govulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (once)" >&2
  src=$(cd /tmp && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src/data/osv" ] || { echo "govulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION" >&2; exit 1; }
  mkdir -p "$cache_root"
  tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd /tmp && GOFLAGS=-mod=mod go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$tmp/db")
  rm -rf "$db"
  mv "$tmp/db" "$db"
fi
cd "$here"
exec "$(go env GOPATH)/bin/govulncheck" -db "file://$db" "$@" ./...
