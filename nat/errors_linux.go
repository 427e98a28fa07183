package nat

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Hints appended to kernel errors, saying what the operator can do.
const (
	hintPermission = "ftpgate needs CAP_NET_ADMIN to change nftables: run it as root or grant the capability " +
		"(systemd: AmbientCapabilities=CAP_NET_ADMIN; Kubernetes: securityContext.capabilities.add: [NET_ADMIN]), " +
		"or set firewall mode none"
	hintNoNetlink = "this kernel has no nftables netlink interface: load it (modprobe nf_tables) or build the kernel " +
		"with CONFIG_NF_TABLES, or set firewall mode none"
	hintFamily = "this kernel lacks the nftables table family needed (CONFIG_NF_TABLES_INET, CONFIG_NF_TABLES_IPV4, " +
		"CONFIG_NF_TABLES_IPV6): load nf_tables or set firewall mode none"
	hintFeature = "this kernel lacks an nftables feature ftpgate uses (owned tables need Linux 5.12 or later; " +
		"concatenated sets with timeouts, ct state and set lookups are needed too): upgrade the kernel, " +
		"use firewall mode external-set, or set firewall mode none"
	hintSetFull = "the pinhole set is full: raise the \"size\" in its declaration, or find what keeps so many " +
		"pinholes open"
	hintModules = "this kernel lacks an nftables expression ftpgate uses (ct, lookup, payload, cmp, bitwise, counter; " +
		"with interception also nat, redir, fib, and for tproxy socket and tproxy): load the modules " +
		"(modprobe nf_tables nft_ct; nft_nat nft_redir nft_fib_inet; nft_socket nft_tproxy) or set firewall mode none"
)

// explain adds to a kernel error what the operator can do about it. The
// error stays matchable with errors.Is.
func explain(err error) error {
	var hint string
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		hint = hintPermission
	case errors.Is(err, unix.EPROTONOSUPPORT):
		hint = hintNoNetlink
	case errors.Is(err, unix.EAFNOSUPPORT):
		hint = hintFamily
	case errors.Is(err, unix.EOPNOTSUPP):
		hint = hintFeature
	case errors.Is(err, unix.ENFILE):
		hint = hintSetFull
	default:
		return err
	}
	return &hintError{err: err, hint: hint}
}

// explainSetup is explain for the batch that creates table inet ftpgate,
// where ENOENT means a missing expression module, not a missing object.
func explainSetup(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return &hintError{err: err, hint: hintModules}
	}
	return explain(err)
}

// explainList is explain for the first request ftpgate makes, listing
// tables, where EINVAL means the kernel has no nf_tables subsystem.
func explainList(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return &hintError{err: err, hint: hintNoNetlink}
	}
	return explain(err)
}

// hintError is a kernel error with advice for the operator.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return fmt.Sprintf("%v (%s)", e.err, e.hint) }
func (e *hintError) Unwrap() error { return e.err }
