#!/usr/bin/env bash
# Static fudbench binaries for the hosts a lab runs it on: a PC or server
# (linux/amd64), a 64-bit Raspberry Pi OS or any arm64 board
# (linux/arm64), and 32-bit Raspberry Pi OS (linux/arm/v7; linux/arm/v6
# for the Pi Zero and Pi 1). Pure Go (CGO_ENABLED=0), so each binary runs
# on its host with nothing installed; the commit is embedded (`fudbench
# version` prints it).
#
#   scripts/build-release.sh [-o DIR] [TARGET...]
#
# TARGET is OS/ARCH or linux/arm/v6|v7; the default is all four. Writes
# DIR/fudbench-OS-ARCH[VARIANT] (default DIR: dist) and DIR/SHA256SUMS.
set -euo pipefail

out=dist
if [ "${1:-}" = "-o" ]; then
	out=$2
	shift 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	targets=(linux/amd64 linux/arm64 linux/arm/v7 linux/arm/v6)
fi
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then
	commit="$commit-modified"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
names=()
for t in "${targets[@]}"; do
	IFS=/ read -r goos goarch variant <<<"$t"
	if [ -z "$goos" ] || [ -z "$goarch" ]; then
		echo "build-release: target $t: want OS/ARCH or linux/arm/v6|v7" >&2
		exit 2
	fi
	name="fudbench-$goos-$goarch$variant"
	goarm=
	if [ "$goarch" = arm ]; then
		case "$variant" in
		v6) goarm=6 ;;
		v7 | "") goarm=7 name="fudbench-$goos-armv7" ;;
		*)
			echo "build-release: target $t: arm wants v6 or v7" >&2
			exit 2
			;;
		esac
	fi
	start=$(date +%s)
	(cd "$root" && CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOARM=$goarm GOFLAGS=-buildvcs=false \
		go build -trimpath -ldflags "-s -w -X main.commit=$commit" -o "$out/$name" ./cmd/fudbench)
	printf '%-26s %6.1f MiB  %ss\n' "$name" "$(awk "BEGIN{print $(stat -c %s "$out/$name")/1048576}")" "$(($(date +%s) - start))"
	names+=("$name")
done
(cd "$out" && sha256sum "${names[@]}" >SHA256SUMS)
echo "commit $commit; checksums in $out/SHA256SUMS"
