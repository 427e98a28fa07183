package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
)

// xferlogFields is one xferlog(5) line split into its named fields.
type xferlogFields struct {
	currentTime                                    time.Time
	transferTime, remoteHost, fileSize, filename   string
	transferType, specialAction, direction, access string
	username, service, authMethod, authUser        string
	completion                                     string
}

// parseXferlog splits a line the way log tools do: on white space, the
// first five words being the ctime-style date.
func parseXferlog(t *testing.T, line string) xferlogFields {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 18 {
		t.Fatalf("xferlog line has %d words, want 18 (5 of the date + 13 fields): %q", len(f), line)
	}
	// The date is ctime's (24 characters, a one-digit day padded with a
	// space); after it every field is separated by exactly one space.
	if len(line) < 25 || line[24] != ' ' || line[25:] != strings.Join(f[5:], " ") {
		t.Fatalf("xferlog fields are not single-space separated after the date: %q", line)
	}
	ts, err := time.ParseInLocation(time.ANSIC, line[:24], time.UTC)
	if err != nil {
		t.Fatalf("current-time %q: %v", line[:24], err)
	}
	return xferlogFields{currentTime: ts, transferTime: f[5], remoteHost: f[6], fileSize: f[7], filename: f[8],
		transferType: f[9], specialAction: f[10], direction: f[11], access: f[12], username: f[13],
		service: f[14], authMethod: f[15], authUser: f[16], completion: f[17]}
}

func TestXferlogFields(t *testing.T) {
	start := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		ev   proxy.Event
		want xferlogFields
	}{{
		name: "download with spaces in the name",
		ev: proxy.TransferEvent{Start: start, Duration: 2400 * time.Millisecond, Client: testClient, User: "alice",
			Verb: "RETR", Path: "/pub/file one\ttwo.bin", Direction: "download", Bytes: 1048576, Code: 226, Result: "ok"},
		want: xferlogFields{currentTime: start.Add(2400 * time.Millisecond).Truncate(time.Second), transferTime: "2",
			remoteHost: "198.18.0.10", fileSize: "1048576", filename: "/pub/file_one_two.bin", transferType: "b",
			specialAction: "_", direction: "o", access: "r", username: "alice", service: "ftp", authMethod: "0",
			authUser: "*", completion: "c"},
	}, {
		name: "ASCII download (TYPE A)",
		ev: proxy.TransferEvent{Start: start, Client: testClient, User: "alice", Verb: "RETR", Path: "/README",
			Direction: "download", Bytes: 120, Code: 226, Result: "ok", ASCII: true},
		want: xferlogFields{currentTime: start, transferTime: "0", remoteHost: "198.18.0.10", fileSize: "120",
			filename: "/README", transferType: "a", specialAction: "_", direction: "o", access: "r", username: "alice",
			service: "ftp", authMethod: "0", authUser: "*", completion: "c"},
	}, {
		name: "aborted upload over TLS, anonymous",
		ev: proxy.TransferEvent{Start: start, Duration: 61 * time.Second, Client: testClient, User: "anonymous",
			Verb: "STOR", Path: "/incoming/a", Direction: "upload", Bytes: 4096, Code: 426, Result: "aborted", TLS: true},
		want: xferlogFields{currentTime: start.Add(61 * time.Second), transferTime: "61", remoteHost: "198.18.0.10",
			fileSize: "4096", filename: "/incoming/a", transferType: "b", specialAction: "_", direction: "i",
			access: "a", username: "anonymous", service: "ftps", authMethod: "0", authUser: "*", completion: "i"},
	}, {
		name: "550: failed download, nothing moved",
		ev: proxy.TransferEvent{Start: start, Client: testClient, User: "alice", Verb: "RETR", Path: "/missing",
			Direction: "download", Code: 550, Result: "failed", Cause: "550 No such file"},
		want: xferlogFields{currentTime: start, transferTime: "0", remoteHost: "198.18.0.10", fileSize: "0",
			filename: "/missing", transferType: "b", specialAction: "_", direction: "o", access: "r",
			username: "alice", service: "ftp", authMethod: "0", authUser: "*", completion: "i"},
	}, {
		name: "425: refused, IPv4-mapped client, user with a space",
		ev: proxy.TransferEvent{Start: start, Client: netipMapped(testClient), User: "bob smith", Verb: "APPE",
			Path: "/in/log", Direction: "upload", Code: 425, Result: "refused", Cause: "no data connection"},
		want: xferlogFields{currentTime: start, transferTime: "0", remoteHost: "198.18.0.10", fileSize: "0",
			filename: "/in/log", transferType: "b", specialAction: "_", direction: "i", access: "r",
			username: "bob_smith", service: "ftp", authMethod: "0", authUser: "*", completion: "i"},
	}, {
		name: "DELE is logged as deleted",
		ev:   proxy.FileCommandEvent{Time: start, Client: testClient, User: "alice", Verb: "DELE", Path: "/in/old", Code: 250},
		want: xferlogFields{currentTime: start, transferTime: "0", remoteHost: "198.18.0.10", fileSize: "0",
			filename: "/in/old", transferType: "b", specialAction: "_", direction: "d", access: "r",
			username: "alice", service: "ftp", authMethod: "0", authUser: "*", completion: "c"},
	}, {
		name: "no user, no path",
		ev:   proxy.TransferEvent{Start: start, Verb: "RETR", Direction: "download", Result: "refused", Code: 530},
		want: xferlogFields{currentTime: start, transferTime: "0", remoteHost: "-", fileSize: "0", filename: "-",
			transferType: "b", specialAction: "_", direction: "o", access: "r", username: "*", service: "ftp",
			authMethod: "0", authUser: "*", completion: "i"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			if !xferlogAccepts(c.ev) {
				t.Fatal("xferlog does not accept the event")
			}
			line := string(appendXferlog(nil, c.ev, time.UTC))
			if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
				t.Fatalf("not one line: %q", line)
			}
			if got := parseXferlog(t, strings.TrimSuffix(line, "\n")); got != c.want {
				t.Fatalf("line %q\n got %+v\nwant %+v", line, got, c.want)
			}
		})
	}
}

func TestXferlogSkips(t *testing.T) {
	for _, ev := range []proxy.Event{
		proxy.TransferEvent{Verb: "LIST", Direction: "download", Result: "ok"},
		proxy.TransferEvent{Verb: "MLSD", Direction: "download", Result: "ok"},
		proxy.FileCommandEvent{Verb: "DELE", Path: "/x", Code: 550},
		proxy.FileCommandEvent{Verb: "MKD", Path: "/x", Code: 257},
		proxy.DenialEvent{Kind: "policy"},
		proxy.SessionEndEvent{},
	} {
		if xferlogAccepts(ev) {
			t.Errorf("xferlog accepts %#v", ev)
		}
		if line := appendXferlog(nil, ev, time.UTC); len(line) != 0 {
			t.Errorf("xferlog wrote %q for %#v", line, ev)
		}
	}
}

// TestXferlogSinkWritesFile runs the real sink on a file: the time is
// the sink's zone, one line per transfer, in order.
func TestXferlogSinkWritesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xferlog")
	loc := time.FixedZone("CET", 3600)
	s := newXferlogSink(path, loc, zap.NewNop())
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	for _, ev := range syntheticEvents() {
		s.Observe(ev)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var got []string
	for _, l := range lines {
		f := parseXferlog(t, l)
		got = append(got, f.direction+f.completion+" "+f.filename)
		if !strings.HasPrefix(l, "Tue Dec  1 10:3") { // 09:30 UTC in CET, a one-digit day padded with a space
			t.Errorf("current-time not in the sink's zone: %q", l)
		}
	}
	want := []string{"oc /pub/file_one.bin", "ii /in/x", "oi /missing", "oi /late", "dc /in/old"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("records %q, want %q", got, want)
	}
}
