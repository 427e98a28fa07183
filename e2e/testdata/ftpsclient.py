#!/usr/bin/python3
"""ftpsclient.py: a Python ftplib FTP_TLS client for ftpgate's FTPS end-to-end tests.

It logs in over explicit TLS (AUTH TLS), protects data connections (PBSZ 0, PROT P) and, like
ftpclient.py, selects the data-connection mode explicitly. Its data connections resume the control
connection's TLS session only with --reuse: Python's ftplib never does by itself, which makes it
the client a server (or ftpgate) requiring session reuse must refuse.

Commands:
  get REMOTE LOCAL      download REMOTE to LOCAL
  put LOCAL REMOTE      upload LOCAL as REMOTE

Prints one JSON object on stdout: {"op", "bytes", "reply", "data_tls", "data_resumed"} on
success, {"error", "data_error"} on failure (exit status 1). The control transcript goes to stderr,
PASS never shown.
"""

import argparse
import ftplib
import json
import ssl
import sys

import ftpclient


class FTPSClient(ftpclient.Client, ftplib.FTP_TLS):
    """FTP_TLS with an explicit data mode and optional TLS session reuse on data connections."""

    def __init__(self, mode, timeout, cafile, reuse):
        super().__init__(mode, False, timeout)
        self.context = ssl.create_default_context(cafile=cafile)
        self.reuse = reuse
        self.data_tls = None
        self.data_resumed = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftpclient.Client.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = self.sock.session if self.reuse else None
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            except BaseException:
                conn.close()
                raise
            self.data_tls = conn.version()
            self.data_resumed = conn.session_reused
        return conn, size


def emit(obj):
    print(json.dumps(obj), flush=True)


def transfer(ftp, cmd, local, upload):
    """Runs one transfer; returns (bytes, data error or None). The final reply is left to read."""
    total = 0
    try:
        conn = ftp.transfercmd(cmd)
    except ssl.SSLError as e:
        return total, "%s: %s" % (type(e).__name__, e)
    try:
        if upload:
            with open(local, "rb") as f:
                while True:
                    block = f.read(1 << 16)
                    if not block:
                        break
                    conn.sendall(block)
                    total += len(block)
        else:
            with open(local, "wb") as f:
                while True:
                    block = conn.recv(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    total += len(block)
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()  # close_notify both ways
    except OSError as e:
        return total, "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    return total, None


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--mode", choices=ftpclient.MODES, default="epsv")
    p.add_argument("--reuse", action="store_true", help="resume the control TLS session on data connections")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("command", choices=("get", "put"))
    p.add_argument("args", nargs=2)
    a = p.parse_args(argv)

    ftp = FTPSClient(a.mode, a.timeout, a.cafile, a.reuse)
    data_error = None
    try:
        ftp.connect(a.host, a.port)
        ftp.auth()
        ftp.login(a.user, a.password)
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        if a.command == "get":
            n, data_error = transfer(ftp, "RETR " + a.args[0], a.args[1], False)
        else:
            n, data_error = transfer(ftp, "STOR " + a.args[1], a.args[0], True)
        reply = ftp.voidresp()
        if data_error:
            raise RuntimeError(data_error)
        emit({"op": a.command, "bytes": n, "reply": reply, "data_tls": ftp.data_tls, "data_resumed": ftp.data_resumed})
        try:
            ftp.quit()
        except (ftplib.Error, OSError):
            ftp.close()
    except ftplib.Error as e:
        emit({"error": str(e), "data_error": data_error})
        return 1
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        emit({"error": "%s: %s" % (type(e).__name__, e), "data_error": data_error})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
