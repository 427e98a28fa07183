package proxy

import (
	"context"
	"path"
	"strings"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// Absolute paths for the records: with Config.AbsolutePaths the session
// learns the server's working directory once logged in (one PWD of its
// own) and follows the client's CWD, CDUP and PWD replies, so that transfer
// and file-command records name files as /dir/file, whatever directory the
// client was in. Without it, or before the directory is known, records
// carry the path as the client gave it.

// learnCWD asks the server for the working directory after a login.
func (s *session) learnCWD(ctx context.Context) error {
	rep, err := s.ctl.exchange(ctx, "PWD", "")
	if err != nil {
		return err
	}
	if rep.Code != 257 {
		s.log.Debug("no working directory from the server", zap.Int("code", rep.Code))
		return nil
	}
	if dir, err := rewrite.ParsePWD(rep.Text()); err == nil {
		s.cwd = path.Clean(dir)
	}
	return nil
}

// followCWD updates the working directory from a command the server
// accepted.
func (s *session) followCWD(cmd rewrite.Command, rep *rewrite.Reply) {
	verb := cmd.Verb
	if a := cmd.Info().AliasOf; a != "" {
		verb = a // XCWD, XCUP, XPWD
	}
	switch verb {
	case "CWD":
		if rep.Code/100 == 2 && cmd.Arg != "" {
			if p := s.absPath(cmd.Arg); strings.HasPrefix(p, "/") {
				s.cwd = p
			}
		}
	case "CDUP":
		if rep.Code/100 == 2 && s.cwd != "" {
			s.cwd = path.Dir(s.cwd)
		}
	case "PWD":
		if rep.Code == 257 {
			if dir, err := rewrite.ParsePWD(rep.Text()); err == nil {
				s.cwd = path.Clean(dir)
			}
		}
	}
}

// absPath is p made absolute against the working directory, when that is
// known; p as it is otherwise.
func (s *session) absPath(p string) string {
	switch {
	case p == "":
		return s.cwd
	case strings.HasPrefix(p, "/"):
		return path.Clean(p)
	case s.cwd != "":
		return path.Join(s.cwd, p)
	}
	return p
}
