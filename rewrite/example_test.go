package rewrite_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ftpgate/ftpgate/rewrite"
)

// A proxy reads a client's command, looks up what it must do, and logs it
// without the password.
func ExampleReader_ReadCommand() {
	r := rewrite.NewReader(strings.NewReader("USER alice\r\nPASS hunter2\r\n\xff\xf4\xff\xf2ABOR\r\n"), rewrite.Limits{})
	for {
		c, err := r.ReadCommand()
		if err != nil {
			break
		}
		fmt.Printf("%-14s class=%s telnet=%s\n", c, c.Info().Class, c.Telnet)
	}
	// Output:
	// USER alice     class=auth telnet=none
	// PASS REDACTED  class=auth telnet=none
	// ABOR           class=state telnet=IP|SYNCH
}

// A proxy reads the server's 227 reply, takes the port, and answers the
// client with its own advertised address.
func ExampleParsePASV() {
	r := rewrite.NewReader(strings.NewReader("227 Entering Passive Mode (10,0,0,5,195,149).\r\n"), rewrite.Limits{})
	reply, err := r.ReadReply()
	if err != nil {
		panic(err)
	}
	server, err := rewrite.ParsePASV(reply.Text())
	if err != nil {
		panic(err)
	}
	text, err := rewrite.FormatPASV(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), 40000))
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	if err := rewrite.NewWriter(&out).WriteReply(rewrite.NewReply(227, text)); err != nil {
		panic(err)
	}
	fmt.Println("server:", server)
	fmt.Printf("client: %q\n", out.String())
	// Output:
	// server: 10.0.0.5:50069
	// client: "227 Entering Passive Mode (198,18,0,1,156,64).\r\n"
}

// A proxy hides the features it cannot carry from the FEAT reply.
func ExampleFilterFeatures() {
	feat := rewrite.NewReply(211, "Features:", " EPRT", " EPSV", " AUTH TLS", " UTF8", "End")
	filtered := rewrite.FilterFeatures(feat, func(f rewrite.Feature) bool { return f.Name != "AUTH" })
	b, _ := filtered.Bytes()
	fmt.Print(strings.ReplaceAll(string(b), "\r\n", "\n"))
	// Output:
	// 211-Features:
	//  EPRT
	//  EPSV
	//  UTF8
	// 211 End
}
