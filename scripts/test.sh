#!/usr/bin/env bash
# ftpgate's whole test suite, from a fresh Debian 12 machine, as root:
# installs what the tests need, then runs formatting and vet checks, the unit,
# kernel and end-to-end tests under the race detector, and a short fuzz pass.
#
#   scripts/test.sh                 everything
#   FUZZTIME=60s scripts/test.sh    a longer fuzz pass
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-5s}
# End-to-end prerequisites are installed below, so a missing one is a
# failure, never a skip.
export FTPGATE_E2E=1
# The e2e suite builds the ftpgate binary with the race detector too.
export FTPGATE_RACE=${FTPGATE_RACE:-1}

step() { printf '\n=== %s\n' "$*"; }

step "install test prerequisites"
export PATH=$PATH:/usr/local/go/bin
# Go 1.26 is part of the machine image (/usr/local/go). Debian 12's own
# golang-go (1.19) is too old to build this module or to fetch a newer
# toolchain, so a missing Go is reported rather than half-installed.
if ! command -v go >/dev/null; then
	echo "Go is not installed: install Go 1.26 (this project's machines have it in /usr/local/go)" >&2
	exit 1
fi
go version
bash scripts/install-test-deps.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted
	exit 1
fi
echo "all files formatted"

step "go vet"
go vet ./...

step "go test -race (unit, kernel and end-to-end)"
go test -race -count=1 -timeout 30m ./...

step "deploy/kubernetes: manifests decode strictly against the Kubernetes API types"
(cd deploy/kubernetes && go vet ./... && go test -race -count=1 ./...)

step "fuzz pass ($FUZZTIME per target)"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "--- $pkg $t"
		for try in 1 2 3; do
			if out=$(go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
				echo "$out" | tail -n 3
				break
			fi
			echo "$out"
			# A finding is written to testdata/fuzz and fails at once. A
			# failure of the fuzzing engine itself gets two more tries: Go
			# before 1.27 can end a -fuzztime run with a bare "context
			# deadline exceeded" when a worker is mid-call at the deadline
			# (golang/go#75804); a count-based -fuzztime would avoid it, but
			# the targets' speeds differ a thousandfold.
			if grep -q 'Failing input written to' <<<"$out" || [ "$try" = 3 ]; then
				echo "fuzz target $t failed"
				exit 1
			fi
			echo "fuzz target $t: the fuzzing engine failed without a finding; trying again"
		done
	done
done

step "all checks passed"
