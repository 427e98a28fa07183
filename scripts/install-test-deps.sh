#!/usr/bin/env bash
# install-test-deps.sh installs everything ftpgate's test suite needs on Debian 12, run as root.
#
# It is idempotent and fast when everything is already in place, runs unattended, and prints what
# it did. It downloads only from Debian's apt repositories and the Go module proxy.
#
#   - apt packages: vsftpd, curl, lftp, python3, nftables, iproute2, conntrack, strace, procps, ...
#   - proftpd and pure-ftpd: their Debian packages conflict with vsftpd (Conflicts: ftp-server), so
#     their .debs are fetched with `apt-get download` and unpacked with `dpkg-deb -x` under
#     /opt/ftpgate-e2e/<name>/; their library dependencies are installed with apt.
#   - no FTP daemon is left running in the root network namespace (vsftpd is kept from starting on
#     install and disabled; the e2e tests start their own servers inside test namespaces).
#   - the system account the e2e servers log users in as (ftpgate-e2e, password in E2E_PASSWORD
#     below, also in e2e/prereq.go), and the PAM service vsftpd uses for it.
#   - `go mod download` for the module's dependencies.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"

OPT_DIR=/opt/ftpgate-e2e
E2E_USER=ftpgate-e2e
E2E_PASSWORD=ftpgate-e2e-secret
E2E_HOME=/var/lib/ftpgate-e2e
PAM_SERVICE=/etc/pam.d/ftpgate-e2e
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'install-test-deps: %s\n' "$*"; }

if [[ "$(id -u)" -ne 0 ]]; then
	echo "install-test-deps: must run as root" >&2
	exit 1
fi

# Packages installed with apt. proftpd/pure-ftpd library dependencies are listed here too so one
# apt transaction covers everything.
APT_PACKAGES=(
	vsftpd curl lftp python3 nftables iproute2 conntrack strace procps openssl haproxy mptcpize
	ca-certificates libpam-modules libpam-runtime passwd
	# proftpd-core's libraries
	libacl1 libcap2 libcrypt1 libhiredis0.14 libidn2-0 libmemcached11 libmemcachedutil2
	libncursesw6 libpam0g libpcre2-8-0 libpcre2-posix3 libssl3 libtinfo6 zlib1g
	# pure-ftpd's libraries
	libsodium23
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

# Keep package scripts from starting daemons (vsftpd) in the root namespace: a policy-rc.d that
# exits 101 denies every invoke-rc.d start. Only ours is removed afterwards.
our_policy=0
cleanup_policy() {
	if [[ "$our_policy" -eq 1 ]]; then
		rm -f /usr/sbin/policy-rc.d
	fi
}
trap cleanup_policy EXIT

if [[ "${#missing[@]}" -gt 0 ]]; then
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, written by ftpgate install-test-deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		our_policy=1
	fi
	log "apt-get install: ${missing[*]}"
	if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
		log "apt-get install failed; running apt-get update and retrying"
		apt-get update
		apt-get install -y --no-install-recommends "${missing[@]}"
	fi
else
	log "apt packages already installed"
fi
cleanup_policy
our_policy=0

# No daemon from these packages may serve in the root namespace: the tests start their own
# servers inside test namespaces. Stop them through their init scripts (pidfile based, so only
# the packaged daemon is touched) and keep them from starting at boot.
for svc in vsftpd haproxy; do
	[[ -x "/etc/init.d/$svc" ]] || continue
	if [[ -d /run/systemd/system ]]; then
		if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
			log "$svc: stopped and disabled (systemd)"
		fi
		continue
	fi
	if "/etc/init.d/$svc" status >/dev/null 2>&1; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		log "$svc: init script reports it running (it matches by name, so this may be a test's own server in a namespace); asked it to stop the packaged daemon by pidfile"
	fi
	if compgen -G "/etc/rc[2-5].d/S*$svc" >/dev/null; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
		log "$svc: disabled at boot"
	fi
done

# proftpd and pure-ftpd, unpacked side by side with vsftpd.
unpack() {
	local name="$1" probe="$2"
	shift 2
	local dest="$OPT_DIR/$name"
	local want
	want="$(for p in "$@"; do apt-cache policy "$p" | awk '/Candidate:/ {print $2}'; done | paste -sd' ')"
	if [[ -x "$dest/$probe" && -f "$dest/.versions" && "$(cat "$dest/.versions")" == "$want" ]]; then
		log "$name already unpacked in $dest ($want)"
		return
	fi
	local tmp
	tmp="$(mktemp -d)"
	chown _apt "$tmp" 2>/dev/null || true # apt-get download fetches as _apt
	log "downloading $* for $dest"
	(cd "$tmp" && apt-get download "$@" >/dev/null)
	rm -rf "$dest"
	mkdir -p "$dest"
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$dest"
	done
	printf '%s' "$want" >"$dest/.versions"
	rm -rf "$tmp"
	log "unpacked $name into $dest ($want)"
}
mkdir -p "$OPT_DIR"
unpack proftpd usr/sbin/proftpd proftpd-core
# mod_tls for the FTPS tests, which load it with ModulePath and LoadModule; a directory of its own
# keeps the proftpd-core unpack above as it is.
unpack proftpd-tls usr/lib/proftpd/mod_tls.so proftpd-mod-crypto
unpack pure-ftpd usr/sbin/pure-ftpd pure-ftpd pure-ftpd-common

# The account the test servers log in as.
if ! getent passwd "$E2E_USER" >/dev/null; then
	useradd --system --user-group --home-dir "$E2E_HOME" --create-home --shell /usr/sbin/nologin "$E2E_USER"
	log "created user $E2E_USER"
fi
mkdir -p "$E2E_HOME"
chown "$E2E_USER:$E2E_USER" "$E2E_HOME"
# Set the password only when it differs (chpasswd rewrites /etc/shadow every time). SHA-512 crypt
# rather than Debian's default yescrypt: the servers verify it on each of the suite's hundreds of
# logins, and yescrypt is slow by design.
if ! /usr/bin/python3 - "$E2E_USER" "$E2E_PASSWORD" <<'EOF' 2>/dev/null; then
import crypt, spwd, sys
h = spwd.getspnam(sys.argv[1]).sp_pwdp
sys.exit(0 if h.startswith("$6$") and crypt.crypt(sys.argv[2], h) == h else 1)
EOF
	echo "$E2E_USER:$E2E_PASSWORD" | chpasswd --crypt-method SHA512
	log "set password of $E2E_USER"
fi

# A PAM service for the test user: only pam_unix (the account's shell is nologin, which Debian's
# /etc/pam.d/vsftpd would refuse through pam_shells).
pam_content='# written by ftpgate scripts/install-test-deps.sh for the e2e test servers
auth     required pam_unix.so
account  required pam_unix.so
session  required pam_permit.so'
if [[ ! -f "$PAM_SERVICE" || "$(cat "$PAM_SERVICE")" != "$pam_content" ]]; then
	printf '%s\n' "$pam_content" >"$PAM_SERVICE"
	log "wrote $PAM_SERVICE"
fi

# Go module dependencies.
if command -v go >/dev/null 2>&1 && [[ -f "$REPO_DIR/go.mod" ]]; then
	(cd "$REPO_DIR" && go mod download)
	[[ -f "$REPO_DIR/deploy/kubernetes/go.mod" ]] && (cd "$REPO_DIR/deploy/kubernetes" && go mod download)
	log "go mod download done"
else
	log "go or $REPO_DIR/go.mod not found; skipped go mod download"
fi

# promtool for the monitoring tests (cmd/ftpgate: `promtool check rules` on deploy/monitoring and
# `promtool check metrics` on a scrape). Debian ships it in the prometheus package, whose install
# would also start a Prometheus server in the root namespace; promtool is one static binary, so the
# package is unpacked like the FTP servers above and nothing runs.
unpack prometheus usr/bin/promtool prometheus

# --- packaging tests (deploy/: systemd unit, container image, appliance builds) ---------------
# systemd-analyze (verify, security --offline, syscall-filter) comes with Debian's systemd
# package; qemu-user-static runs the arm64/arm/mipsle cross builds' `ftpgate version`;
# util-linux has setpriv and unshare (cmd/ftpgate runs ftpgate as nobody with ambient
# capabilities); strace proves `ftpgate check` opens no netlink socket and traces the syscalls
# the unit's SystemCallFilter must allow. The policy-rc.d guard keeps package scripts from
# starting anything.
PACKAGING_PACKAGES=(systemd qemu-user-static util-linux strace)
packaging_missing=()
for p in "${PACKAGING_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		packaging_missing+=("$p")
	fi
done
if [[ "${#packaging_missing[@]}" -gt 0 ]]; then
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, written by ftpgate install-test-deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		our_policy=1
	fi
	log "apt-get install (packaging tests): ${packaging_missing[*]}"
	if ! apt-get install -y --no-install-recommends "${packaging_missing[@]}"; then
		apt-get update
		apt-get install -y --no-install-recommends "${packaging_missing[@]}"
	fi
	cleanup_policy
	our_policy=0
else
	log "packaging test packages already installed"
fi
# --- end of packaging tests block -------------------------------------------------------------
# rclone for the e2e test of FTPS clients that share one TLS session cache across parallel
# control connections (e2e/ftps_sharedcache_linux_test.go). Debian's package is one static
# binary and starts nothing.
if ! dpkg-query -W -f='${Status}' rclone 2>/dev/null | grep -q 'install ok installed'; then
	log "apt-get install: rclone"
	if ! apt-get install -y --no-install-recommends rclone; then
		log "apt-get install failed; running apt-get update and retrying"
		apt-get update
		apt-get install -y --no-install-recommends rclone
	fi
else
	log "rclone already installed"
fi

log "done"
