package main

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
)

// The xferlog(5) format of wu-ftpd and ProFTPD, one line per transfer, with
// the fields separated by single spaces:
//
//		current-time transfer-time remote-host file-size filename transfer-type
//		special-action-flag direction access-mode username service-name
//		authentication-method authenticated-user-id completion-status
//
//	  - current-time: local time "DDD MMM dd hh:mm:ss YYYY" (ctime(3), the day
//	    padded with a space), here the end of the transfer;
//	  - transfer-time: whole seconds, rounded;
//	  - remote-host: the client's address;
//	  - file-size: the bytes relayed;
//	  - filename: the path, every white-space or control byte replaced by "_"
//	    as ProFTPD does, so that the line splits into its fields;
//	  - transfer-type: "a" (ASCII) after a TYPE A the server accepted, else "b"
//	    (binary); "b" for a deletion;
//	  - special-action-flag: "_" (no compression or tar);
//	  - direction: "o" outgoing (RETR), "i" incoming (STOR, STOU, APPE), "d"
//	    deleted (a DELE that succeeded, as ProFTPD logs it);
//	  - access-mode: "a" for anonymous or ftp, "r" for a real user;
//	  - username: the login name ("_" for spaces, "*" before a login);
//	  - service-name: "ftp", or "ftps" when the client's data leg was TLS;
//	  - authentication-method: "0" (none; no RFC 931 ident);
//	  - authenticated-user-id: "*" (not available);
//	  - completion-status: "c" complete, "i" incomplete (failed, aborted or
//	    refused transfers are logged too, with the bytes that crossed).
//
// Directory listings (LIST, NLST, MLSD) are not file transfers and, as in
// ProFTPD, are not logged; the audit log has them.
const xferlogTime = time.ANSIC // "Mon Jan _2 15:04:05 2006"

// newXferlogSink is the --xferlog sink; loc is the time zone of current-time
// (time.Local in ftpgate).
func newXferlogSink(path string, loc *time.Location, log *zap.Logger) *logSink {
	return newLogSink("xferlog", path, sinkQueue, xferlogAccepts,
		func(buf []byte, ev proxy.Event) []byte { return appendXferlog(buf, ev, loc) }, log)
}

func xferlogAccepts(ev proxy.Event) bool {
	switch e := ev.(type) {
	case proxy.TransferEvent:
		return xferDirection(e.Verb) != 0
	case proxy.FileCommandEvent:
		return isDelete(e)
	}
	return false
}

// xferDirection is the direction field of a transfer verb, or 0 for one
// xferlog does not record.
func xferDirection(verb string) byte {
	switch strings.ToUpper(verb) {
	case "RETR":
		return 'o'
	case "STOR", "STOU", "APPE":
		return 'i'
	}
	return 0
}

func isDelete(e proxy.FileCommandEvent) bool {
	return strings.EqualFold(e.Verb, "DELE") && e.Code >= 200 && e.Code < 300
}

// appendXferlog appends the xferlog line of ev, or nothing.
func appendXferlog(buf []byte, ev proxy.Event, loc *time.Location) []byte {
	switch e := ev.(type) {
	case proxy.TransferEvent:
		dir := xferDirection(e.Verb)
		if dir == 0 {
			return buf
		}
		status := byte('c')
		if e.Result != "ok" {
			status = 'i'
		}
		service := "ftp"
		if e.TLS {
			service = "ftps"
		}
		secs := int64(math.Round(e.Duration.Seconds()))
		typ := byte('b')
		if e.ASCII {
			typ = 'a'
		}
		return appendXferlogLine(buf, e.Start.Add(e.Duration).In(loc), secs, e.Client.Addr(), e.Bytes, e.Path,
			typ, dir, e.User, service, status)
	case proxy.FileCommandEvent:
		if !isDelete(e) {
			return buf
		}
		return appendXferlogLine(buf, e.Time.In(loc), 0, e.Client.Addr(), 0, e.Path, 'b', 'd', e.User, "ftp", 'c')
	}
	return buf
}

func appendXferlogLine(buf []byte, now time.Time, secs int64, host netip.Addr, size int64, path string,
	typ, dir byte, user, service string, status byte) []byte {
	buf = now.AppendFormat(buf, xferlogTime)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, secs, 10)
	buf = append(buf, ' ')
	if host.IsValid() {
		buf = append(buf, host.Unmap().WithZone("").String()...)
	} else {
		buf = append(buf, '-')
	}
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, max(size, 0), 10)
	buf = append(buf, ' ')
	buf = appendXferlogWord(buf, path, "-")
	buf = append(buf, ' ', typ, ' ', '_', ' ')
	buf = append(buf, dir, ' ')
	if isAnonymous(user) {
		buf = append(buf, 'a', ' ')
	} else {
		buf = append(buf, 'r', ' ')
	}
	buf = appendXferlogWord(buf, user, "*")
	buf = append(buf, ' ')
	buf = append(buf, service...)
	buf = append(buf, " 0 * "...)
	return append(buf, status, '\n')
}

// appendXferlogWord appends s with every white-space or control byte
// replaced by "_" (ProFTPD's rule for file names), or empty if s is empty.
func appendXferlogWord(buf []byte, s, empty string) []byte {
	if s == "" {
		return append(buf, empty...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f {
			c = '_'
		}
		buf = append(buf, c)
	}
	return buf
}

func isAnonymous(user string) bool {
	return strings.EqualFold(user, "anonymous") || strings.EqualFold(user, "ftp")
}
