#!/bin/bash
# Build the release artifacts into $DIST_DIR (default dist/), reproducibly:
# the same commit, Go toolchain and SOURCE_DATE_EPOCH give the same bytes.
#
#   ccboot_VERSION_linux_ARCH          stripped static binary (the UserData URL)
#   ccboot_VERSION_linux_ARCH.tar.gz   binary + ccboot.service + README.md +
#                                      LICENSE + THIRD_PARTY_LICENSES
#   ccboot_PKGVER-1_ARCH.deb, ccboot-PKGVER-1.ARCH.rpm
#   distributor/VERSION/               the SSM Distributor package: manifest.json
#                                      and ccboot_VERSION_{al2023,debian}_{x86_64,arm64}.zip
#                                      (one folder per version: it is what
#                                      `aws s3 cp --recursive` uploads)
#   SHA256SUMS                         over all of the above
#
# Environment: VERSION (git describe), COMMIT, SOURCE_DATE_EPOCH (last commit
# time), DIST_DIR, ARCHES ("arm64 amd64"), NFPM (command to run nfpm).
set -euo pipefail

cd "$(dirname "$0")/.."

NFPM_VERSION=v2.45.2
DIST_DIR=${DIST_DIR:-dist}
ARCHES=${ARCHES:-arm64 amd64}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
NFPM=${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION}
export SOURCE_DATE_EPOCH

# Package managers want a version that starts with a digit; an untagged
# build becomes 0.0.0-git.<describe> (deb 0.0.0~git..., rpm 0.0.0~git...).
case "$VERSION" in
  v[0-9]*) PKG_VERSION=${VERSION#v} ;;
  [0-9]*) PKG_VERSION=$VERSION ;;
  *) PKG_VERSION=0.0.0-git.$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9.\n' '.') ;;
esac

case "$VERSION$COMMIT" in
  *[!A-Za-z0-9._+-]*) echo "dist: VERSION/COMMIT may only hold letters, digits and . _ + -" >&2; exit 3 ;;
esac

# The licenses of what the binary links must be listed before it ships.
bash packaging/licenses.sh --check

outputs=()
mkdir -p "$DIST_DIR"
DIST_DIR=$(cd "$DIST_DIR" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

for arch in $ARCHES; do
  case "$arch" in
    arm64) rpm_arch=aarch64 ;;
    amd64) rpm_arch=x86_64 ;;
    *) echo "dist: unknown arch $arch (use arm64 or amd64)" >&2; exit 3 ;;
  esac
  bin=ccboot_${VERSION}_linux_${arch}
  echo "dist: building $bin" >&2
  # -buildid= and -buildvcs=false keep per-build and per-checkout noise out;
  # -trimpath keeps the build directory out. nethttpomithttp2 leaves out
  # net/http's bundled HTTP/2 (~390 KiB): IMDS and the WaitCondition PUT
  # speak HTTP/1.1.
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOFLAGS='' \
    go build -trimpath -buildvcs=false -tags nethttpomithttp2 \
    -ldflags "-s -w -buildid= -X main.version=$VERSION -X main.commit=$COMMIT" \
    -o "$DIST_DIR/$bin" ./cmd/ccboot
  chmod 0755 "$DIST_DIR/$bin"
  outputs+=("$bin" "$bin.tar.gz")
  touch -d "@$SOURCE_DATE_EPOCH" "$DIST_DIR/$bin"

  dir=$stage/$bin
  mkdir -p "$dir"
  install -m 0755 "$DIST_DIR/$bin" "$dir/ccboot"
  install -m 0644 packaging/systemd/ccboot.service "$dir/ccboot.service"
  install -m 0644 packaging/systemd/ccboot-broker.socket "$dir/ccboot-broker.socket"
  install -m 0644 packaging/systemd/ccboot-broker.service "$dir/ccboot-broker.service"
  if [ -f README.md ]; then install -m 0644 README.md "$dir/README.md"; fi
  install -m 0644 LICENSE "$dir/LICENSE"
  install -m 0644 THIRD_PARTY_LICENSES "$dir/THIRD_PARTY_LICENSES"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf - "$bin" | gzip -n -9 >"$DIST_DIR/$bin.tar.gz"

  for fmt in deb rpm; do
    case "$fmt" in
      deb) out=ccboot_${PKG_VERSION}-1_${arch}.deb ;;
      rpm) out=ccboot-${PKG_VERSION}-1.${rpm_arch}.rpm ;;
    esac
    NFPM_ARCH=$arch NFPM_BINARY=$DIST_DIR/$bin PKG_VERSION=$PKG_VERSION \
      $NFPM package --config packaging/nfpm.yaml --packager "$fmt" --target "$DIST_DIR/$out" >&2
    outputs+=("$out")
  done
done

# The Distributor package: manifest.json and one zip per platform and arch
# (packaging/distributor), from the binaries above.
bins=()
for arch in $ARCHES; do bins+=(-bin "$arch=$DIST_DIR/ccboot_${VERSION}_linux_${arch}"); done
GOFLAGS='' go run ./packaging/distributor/mkpackage -version "$VERSION" -epoch "$SOURCE_DATE_EPOCH" \
  -out "$DIST_DIR/distributor/$VERSION" "${bins[@]}" -doc LICENSE -doc THIRD_PARTY_LICENSES >"$stage/distributor.list"
while IFS= read -r name; do outputs+=("distributor/$VERSION/$name"); done <"$stage/distributor.list"
echo "dist: wrote $DIST_DIR/distributor/$VERSION" >&2

# Only this build's files, so a dist/ holding older versions still sums right.
(cd "$DIST_DIR" && printf '%s\n' "${outputs[@]}" | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "dist: wrote $DIST_DIR/SHA256SUMS" >&2
cat "$DIST_DIR/SHA256SUMS"
