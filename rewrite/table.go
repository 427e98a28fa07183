package rewrite

import (
	"slices"
	"strconv"
	"strings"
)

// Class says what a proxy must do with a command.
//
// ABOR and QUIT are ClassState: they change the session's state (abort the
// transfer in progress, end the session) and a proxy handles each by verb.
// STAT is ClassInfo: with a path argument the server answers with a listing
// on the control connection, never a data connection. SITE is ClassFile:
// its subcommands (CHMOD, UMASK, UTIME, ...) are mostly file operations.
type Class int

const (
	ClassUnknown   Class = iota // not in the table: carried as unknown
	ClassDataSetup              // negotiates a data connection: PORT PASV EPRT EPSV LPRT LPSV SPSV
	ClassTransfer               // opens a transfer on the data connection: RETR STOR STOU APPE LIST NLST MLSD THMB
	ClassSecurity               // security and TLS: AUTH ADAT PBSZ PROT CCC MIC CONF ENC
	ClassAuth                   // authentication: USER PASS ACCT
	ClassState                  // changes session state: TYPE MODE STRU REST REIN OPTS LANG HOST ALLO ABOR QUIT
	ClassFile                   // path or file operation on the control connection: CWD CDUP DELE MKD RMD RNFR RNTO SIZE MDTM MLST ...
	ClassInfo                   // informational: FEAT HELP NOOP STAT SYST PWD CSID
	ClassObsolete               // obsolete: an experimental alias of a modern verb (Info.AliasOf) or a retired mail extension
)

func (c Class) String() string {
	switch c {
	case ClassUnknown:
		return "unknown"
	case ClassDataSetup:
		return "data-setup"
	case ClassTransfer:
		return "transfer"
	case ClassSecurity:
		return "security"
	case ClassAuth:
		return "auth"
	case ClassState:
		return "state"
	case ClassFile:
		return "file"
	case ClassInfo:
		return "info"
	case ClassObsolete:
		return "obsolete"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// ParseClass returns the class whose String form is name ("transfer",
// "data-setup", ...), so that a configuration can name classes.
func ParseClass(name string) (Class, bool) {
	for c := ClassUnknown; c <= ClassObsolete; c++ {
		if c.String() == name {
			return c, true
		}
	}
	return ClassUnknown, false
}

// Info is one entry of the command table.
type Info struct {
	Verb    string
	Class   Class
	AliasOf string // for obsolete aliases: the modern verb
	Spec    string // where the command is defined, e.g. "RFC 959", "RFC 2428", "draft-somers-ftp-mfxx"
	Secret  bool   // the argument must never be logged
	Summary string // one line of what it does
}

// Specifications named in the table.
const (
	rfc959   = "RFC 959"
	rfc737   = "RFC 737"
	rfc743   = "RFC 743"
	rfc775   = "RFC 775"
	rfc1639  = "RFC 1639"
	rfc2228  = "RFC 2228"
	rfc2389  = "RFC 2389"
	rfc2428  = "RFC 2428"
	rfc2640  = "RFC 2640"
	rfc3659  = "RFC 3659"
	rfc7151  = "RFC 7151"
	draftSF  = "draft-peterson-streamlined-ftp-command-extensions"
	draftMF  = "draft-somers-ftp-mfxx"
	draftSP  = "draft-rosenau-ftp-single-port"
	rfc959re = "RFC 959, RFC 3659"
)

// commands is the command table, sorted by verb. It is read-only.
var commands = [...]Info{
	{Verb: "ABOR", Class: ClassState, Spec: rfc959, Summary: "abort the previous command and any transfer in progress (sent after Telnet IP and Synch)"},
	{Verb: "ACCT", Class: ClassAuth, Spec: rfc959, Secret: true, Summary: "account information for login or for a command that needs it"},
	{Verb: "ADAT", Class: ClassSecurity, Spec: rfc2228, Secret: true, Summary: "security data exchange for the mechanism chosen by AUTH (base64 tokens)"},
	{Verb: "ALLO", Class: ClassState, Spec: rfc959, Summary: "reserve storage for the next STOR, STOU or APPE"},
	{Verb: "APPE", Class: ClassTransfer, Spec: rfc959, Summary: "append (or create) a file with the data sent on the data connection"},
	{Verb: "AUTH", Class: ClassSecurity, Spec: rfc2228, Summary: "negotiate a security mechanism, e.g. AUTH TLS to start TLS on the control connection"},
	{Verb: "AVBL", Class: ClassFile, Spec: draftSF, Summary: "space available for uploads in a directory"},
	{Verb: "CCC", Class: ClassSecurity, Spec: rfc2228, Summary: "clear command channel: end TLS on the control connection"},
	{Verb: "CDUP", Class: ClassFile, Spec: rfc959, Summary: "change to the parent directory"},
	{Verb: "CONF", Class: ClassSecurity, Spec: rfc2228, Summary: "confidentiality-protected command (base64)"},
	{Verb: "CSID", Class: ClassInfo, Spec: draftSF, Summary: "exchange client and server identification"},
	{Verb: "CWD", Class: ClassFile, Spec: rfc959, Summary: "change working directory"},
	{Verb: "DELE", Class: ClassFile, Spec: rfc959, Summary: "delete a file"},
	{Verb: "DSIZ", Class: ClassFile, Spec: draftSF, Summary: "total size of a directory"},
	{Verb: "ENC", Class: ClassSecurity, Spec: rfc2228, Summary: "privacy-protected command (base64)"},
	{Verb: "EPRT", Class: ClassDataSetup, Spec: rfc2428, Summary: "active mode, any address family: the client listens at this address"},
	{Verb: "EPSV", Class: ClassDataSetup, Spec: rfc2428, Summary: "passive mode, port only (229); EPSV ALL allows no other data setup"},
	{Verb: "FEAT", Class: ClassInfo, Spec: rfc2389, Summary: "list the extensions the server supports (211 multi-line)"},
	{Verb: "HELP", Class: ClassInfo, Spec: rfc959, Summary: "help text"},
	{Verb: "HOST", Class: ClassState, Spec: rfc7151, Summary: "select a virtual host before login"},
	{Verb: "LANG", Class: ClassState, Spec: rfc2640, Summary: "language of the server's replies"},
	{Verb: "LIST", Class: ClassTransfer, Spec: rfc959, Summary: "directory listing sent on the data connection"},
	{Verb: "LPRT", Class: ClassDataSetup, Spec: rfc1639, Summary: "active mode with a long address: the client listens at this address"},
	{Verb: "LPSV", Class: ClassDataSetup, Spec: rfc1639, Summary: "passive mode with a long address (228)"},
	{Verb: "MDTM", Class: ClassFile, Spec: rfc3659, Summary: "modification time of a file"},
	{Verb: "MFCT", Class: ClassFile, Spec: draftMF, Summary: "set the creation time of a file"},
	{Verb: "MFF", Class: ClassFile, Spec: draftMF, Summary: "modify facts (times, mode, ...) of a file"},
	{Verb: "MFMT", Class: ClassFile, Spec: draftMF, Summary: "set the modification time of a file"},
	{Verb: "MIC", Class: ClassSecurity, Spec: rfc2228, Summary: "integrity-protected command (base64)"},
	{Verb: "MKD", Class: ClassFile, Spec: rfc959, Summary: "make a directory"},
	{Verb: "MLSD", Class: ClassTransfer, Spec: rfc3659, Summary: "machine-readable directory listing sent on the data connection"},
	{Verb: "MLST", Class: ClassFile, Spec: rfc3659, Summary: "machine-readable facts about one path, on the control connection"},
	{Verb: "MODE", Class: ClassState, Spec: rfc959, Summary: "transfer mode: S(tream), B(lock), C(ompressed) (Z is a common extension)"},
	{Verb: "NLST", Class: ClassTransfer, Spec: rfc959, Summary: "name list sent on the data connection"},
	{Verb: "NOOP", Class: ClassInfo, Spec: rfc959, Summary: "do nothing; keeps the control connection alive"},
	{Verb: "OPTS", Class: ClassState, Spec: rfc2389, Summary: "set options of a command, e.g. OPTS UTF8 ON, OPTS MLST type;size;"},
	{Verb: "PASS", Class: ClassAuth, Spec: rfc959, Secret: true, Summary: "password"},
	{Verb: "PASV", Class: ClassDataSetup, Spec: rfc959, Summary: "passive mode, IPv4: the server listens and answers 227 with its address"},
	{Verb: "PBSZ", Class: ClassSecurity, Spec: rfc2228, Summary: "protection buffer size (PBSZ 0 for TLS)"},
	{Verb: "PORT", Class: ClassDataSetup, Spec: rfc959, Summary: "active mode, IPv4: the client listens at this address"},
	{Verb: "PROT", Class: ClassSecurity, Spec: rfc2228, Summary: "data channel protection level: C(lear), S(afe), E(confidential), P(rivate)"},
	{Verb: "PWD", Class: ClassInfo, Spec: rfc959, Summary: "print working directory (257)"},
	{Verb: "QUIT", Class: ClassState, Spec: rfc959, Summary: "log out and close the control connection after any transfer"},
	{Verb: "REIN", Class: ClassState, Spec: rfc959, Summary: "reinitialise: log out but keep the control connection"},
	{Verb: "REST", Class: ClassState, Spec: rfc959re, Summary: "restart point (byte offset in stream mode) for the next transfer"},
	{Verb: "RETR", Class: ClassTransfer, Spec: rfc959, Summary: "retrieve a file over the data connection"},
	{Verb: "RMD", Class: ClassFile, Spec: rfc959, Summary: "remove a directory"},
	{Verb: "RMDA", Class: ClassFile, Spec: draftSF, Summary: "remove a directory and everything in it"},
	{Verb: "RNFR", Class: ClassFile, Spec: rfc959, Summary: "rename from (followed by RNTO)"},
	{Verb: "RNTO", Class: ClassFile, Spec: rfc959, Summary: "rename to"},
	{Verb: "SITE", Class: ClassFile, Spec: rfc959, Summary: "site-specific command, e.g. SITE CHMOD"},
	{Verb: "SIZE", Class: ClassFile, Spec: rfc3659, Summary: "size of a file"},
	{Verb: "SMNT", Class: ClassFile, Spec: rfc959, Summary: "structure mount: switch to another file system"},
	{Verb: "SPSV", Class: ClassDataSetup, Spec: draftSP, Summary: "single-port passive mode: the 227 reply carries only a port"},
	{Verb: "STAT", Class: ClassInfo, Spec: rfc959, Summary: "status; with a path, a listing sent on the control connection"},
	{Verb: "STOR", Class: ClassTransfer, Spec: rfc959, Summary: "store a file with the data sent on the data connection"},
	{Verb: "STOU", Class: ClassTransfer, Spec: rfc959, Summary: "store a file under a unique name chosen by the server"},
	{Verb: "STRU", Class: ClassState, Spec: rfc959, Summary: "file structure: F(ile), R(ecord), P(age)"},
	{Verb: "SYST", Class: ClassInfo, Spec: rfc959, Summary: "operating system type of the server (215)"},
	{Verb: "THMB", Class: ClassTransfer, Spec: draftSF, Summary: "thumbnail of an image file sent on the data connection"},
	{Verb: "TYPE", Class: ClassState, Spec: rfc959, Summary: "representation type: A(SCII), I(mage), E(BCDIC), L(ocal byte size)"},
	{Verb: "USER", Class: ClassAuth, Spec: rfc959, Summary: "user name; starts a login"},
	{Verb: "XCUP", Class: ClassObsolete, AliasOf: "CDUP", Spec: rfc775, Summary: "experimental CDUP"},
	{Verb: "XMAS", Class: ClassObsolete, Spec: rfc737, Summary: "send a message to a user's terminal and mail it (retired mail extension)"},
	{Verb: "XMKD", Class: ClassObsolete, AliasOf: "MKD", Spec: rfc775, Summary: "experimental MKD"},
	{Verb: "XPWD", Class: ClassObsolete, AliasOf: "PWD", Spec: rfc775, Summary: "experimental PWD"},
	{Verb: "XRCP", Class: ClassObsolete, Spec: rfc743, Summary: "mail recipient (retired mail extension, MRCP in RFC 765)"},
	{Verb: "XRMD", Class: ClassObsolete, AliasOf: "RMD", Spec: rfc775, Summary: "experimental RMD"},
	{Verb: "XRSQ", Class: ClassObsolete, Spec: rfc743, Summary: "mail recipient scheme question (retired mail extension, MRSQ in RFC 765)"},
	{Verb: "XSEM", Class: ClassObsolete, Spec: rfc737, Summary: "send a message to a user's terminal, mail it if that fails (retired mail extension, MSOM in RFC 765)"},
	{Verb: "XSEN", Class: ClassObsolete, Spec: rfc737, Summary: "send a message to a user's terminal (retired mail extension, MSND in RFC 765)"},
}

// Lookup returns the table entry of a verb, in any case.
func Lookup(verb string) (Info, bool) {
	if verb == "" || len(verb) > maxVerbLen {
		return Info{}, false
	}
	verb = asciiUpper(verb)
	i, ok := slices.BinarySearchFunc(commands[:], verb, func(e Info, v string) int {
		return strings.Compare(e.Verb, v)
	})
	if !ok {
		return Info{}, false
	}
	return commands[i], true
}

// Commands returns a copy of the whole table, sorted by verb.
func Commands() []Info {
	return slices.Clone(commands[:])
}
