package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	ftpserver "goftp.io/server/v2"
	"goftp.io/server/v2/driver/file"
)

// Credentials of the embedded server's one account.
const (
	demoUser = "demo"
	demoPass = "demo"
)

// ServerMain is the hidden sub-command __demo-server: the embedded FTP
// server (goftp.io/server/v2) serving a directory, started by the demo in
// the server namespace. It reports its commands and replies (never a
// password) on stdout as JSON lines.
func ServerMain(args []string) int {
	fs := flag.NewFlagSet("__demo-server", flag.ContinueOnError)
	listen := fs.String("listen", "", "control listen address")
	root := fs.String("root", "", "served directory")
	pasv := fs.String("passive-ports", "", "passive port range LO-HI")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serve(*listen, *root, *pasv); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate __demo-server: %v\n", err)
		return 1
	}
	return 0
}

func serve(listen, root, pasv string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", listen, err)
	}
	drv, err := file.NewDriver(root)
	if err != nil {
		return fmt.Errorf("served directory %s: %w", root, err)
	}
	out := newEmitter(os.Stdout)
	srv, err := ftpserver.NewServer(&ftpserver.Options{
		Driver:         drv,
		Auth:           &ftpserver.SimpleAuth{Name: demoUser, Password: demoPass},
		Perm:           ftpserver.NewSimplePerm("demo", "demo"),
		Name:           "ftpgate demo server",
		PublicIP:       host,
		PassivePorts:   pasv,
		WelcomeMessage: "ftpgate demo server (goftp.io/server/v2)",
		Logger:         serverLog{out},
	})
	if err != nil {
		return fmt.Errorf("ftp server: %w", err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	out.emit(event{Ev: "ready", Addr: l.Addr().String()})
	if err := srv.Serve(l); err != nil && !errors.Is(err, ftpserver.ErrServerClosed) && ctx.Err() == nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// serverLog is the embedded server's logger: commands and replies become
// events; everything else is dropped.
type serverLog struct{ out *emitter }

func (serverLog) Print(string, any)             {}
func (serverLog) Printf(string, string, ...any) {}
func (l serverLog) PrintCommand(_ string, verb, arg string) {
	verb = strings.ToUpper(verb)
	if verb == "PASS" || verb == "ACCT" {
		arg = "****"
	}
	l.out.emit(event{Ev: "cmd", Verb: verb, Arg: arg})
}
func (l serverLog) PrintResponse(_ string, code int, text string) {
	l.out.emit(event{Ev: "reply", Code: code, Text: text})
}
