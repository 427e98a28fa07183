#!/usr/bin/env bash
# build-appliances.sh OUTDIR [VERSION] cross-compiles ftpgate for the edge gateways it runs on:
# linux/amd64, linux/arm64, linux/arm (GOARM=7) and linux/mipsle (GOMIPS=softfloat), static
# (CGO_ENABLED=0), -trimpath, stripped (-s -w), without the demo (-tags nodemo: a router does not
# need a lab), and prints each binary's size.
#
#   scripts/build-appliances.sh out/ 1.0.0
#
# deploy/appliance_test.go runs this script and the arm64 result under qemu-user.
set -euo pipefail

out=${1:?usage: build-appliances.sh OUTDIR [VERSION]}
version=${2:-dev}
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

# The google/nftables pseudo-version in go.mod does not compile for 32-bit targets: conn.go passes
# the untyped constant math.MaxUint32 to fmt.Sprintf, where it overflows int. Until go.mod pins a
# version with that fixed, the builds use a patched copy of the module (its argument made a
# uint32) through a temporary go.mod with a replace directive (go build -modfile); the
# repository's go.mod and the module cache stay as they are. Once the pattern is gone upstream,
# nothing is patched.
modflags=()
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
go mod download github.com/google/nftables
nft_dir="$(go list -m -f '{{.Dir}}' github.com/google/nftables)"
bad='single nftables transaction", math.MaxUint32)'
if grep -qF "$bad" "$nft_dir/conn.go"; then
	cp -r "$nft_dir" "$tmp/nftables"
	chmod -R u+w "$tmp/nftables"
	sed -i 's/single nftables transaction", math.MaxUint32)/single nftables transaction", uint32(math.MaxUint32))/' \
		"$tmp/nftables/conn.go"
	cp go.mod "$tmp/go.mod"
	cp go.sum "$tmp/go.sum"
	printf '\nreplace github.com/google/nftables => %s\n' "$tmp/nftables" >>"$tmp/go.mod"
	modflags=(-modfile "$tmp/go.mod")
	echo "build-appliances: google/nftables patched for 32-bit targets (see the comment in this script)" >&2
fi

build() {
	local name="$1"
	shift
	local flags=(-trimpath -tags nodemo -ldflags "-s -w -X main.version=$version" -o "$out/$name")
	flags+=("${modflags[@]}")
	env CGO_ENABLED=0 GOOS=linux "$@" go build "${flags[@]}" ./cmd/ftpgate
	local size
	size=$(stat -c %s "$out/$name")
	awk -v n="$name" -v s="$size" 'BEGIN { printf "%-32s %9d bytes  %6.2f MiB\n", n, s, s / 1048576 }'
}

build ftpgate-linux-amd64 GOARCH=amd64
build ftpgate-linux-arm64 GOARCH=arm64
build ftpgate-linux-armv7 GOARCH=arm GOARM=7
build ftpgate-linux-mipsle-softfloat GOARCH=mipsle GOMIPS=softfloat
