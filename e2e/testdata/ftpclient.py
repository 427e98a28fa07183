#!/usr/bin/python3
"""ftpclient.py: a Python ftplib client for ftpgate's end-to-end tests.

It selects the data-connection mode explicitly (EPSV, PASV, EPRT or PORT) instead of letting
ftplib choose by address family, so every mode is exercised on purpose. It prints results on
stdout (one JSON object per line) and a transcript of the control connection on stderr, with
the PASS argument never printed.

Commands:
  get REMOTE LOCAL            download REMOTE to LOCAL
  put LOCAL REMOTE            upload LOCAL as REMOTE
  list [DIR]                  NLST; the names, one JSON list
  rest-get REMOTE LOCAL       resume: keep LOCAL's bytes, REST len(LOCAL), append the rest
  pending-get REMOTE LOCAL    passive modes only: send EPSV/PASV, print {"event":"pending",
                              "host":..., "port":...}, wait for a line on stdin, then connect,
                              RETR and download (the "someone else connects first" test)
  raw CMD [CMD ...]           send each command after login, print each reply without failing

Exit status: 0 on success, 1 on an FTP error (the reply is on stdout as {"error": ...}),
2 on a usage error.
"""

import argparse
import ftplib
import json
import socket
import sys

MODES = ("epsv", "pasv", "eprt", "port")


class Client(ftplib.FTP):
    """An ftplib.FTP whose data connections use exactly the configured mode."""

    def __init__(self, mode, trust_pasv_ip, timeout):
        super().__init__(timeout=timeout)
        self.mode = mode
        self.trust_pasv_ip = trust_pasv_ip
        self.data_peer = None

    # Transcript on stderr: ftplib's debugging output would print PASS, so log here instead.
    def putcmd(self, line):
        shown = "PASS ****" if line[:5].upper() == "PASS " else line
        print(">", shown, file=sys.stderr, flush=True)
        super().putcmd(line)

    def getresp(self):
        resp = super().getresp()
        print("<", resp.replace("\n", "\n< "), file=sys.stderr, flush=True)
        return resp

    def passive_address(self):
        """Sends EPSV or PASV and returns the (host, port) to connect to."""
        peer = self.sock.getpeername()
        if self.mode == "epsv":
            return ftplib.parse229(self.sendcmd("EPSV"), peer)
        if self.mode == "pasv":
            host, port = ftplib.parse227(self.sendcmd("PASV"))
            if not self.trust_pasv_ip:
                host = peer[0]
            return host, port
        raise ValueError("mode %s is not passive" % self.mode)

    def ntransfercmd(self, cmd, rest=None):
        size = None
        if self.mode in ("epsv", "pasv"):
            host, port = self.passive_address()
            conn = socket.create_connection((host, port), self.timeout)
            try:
                resp = self._start_transfer(cmd, rest)
            except BaseException:
                conn.close()
                raise
        else:
            local = self.sock.getsockname()[0]
            family = socket.AF_INET6 if ":" in local else socket.AF_INET
            with socket.create_server((local, 0), family=family, backlog=1) as listener:
                port = listener.getsockname()[1]
                if self.mode == "port":
                    if family != socket.AF_INET:
                        raise ValueError("PORT needs an IPv4 control connection")
                    self.sendport(local, port)
                else:
                    self.sendeprt(local, port)
                resp = self._start_transfer(cmd, rest)
                listener.settimeout(self.timeout)
                conn, _ = listener.accept()
        self.data_peer = conn.getpeername()[0]
        if self.timeout is not None:
            conn.settimeout(self.timeout)
        if resp[:3] == "150":
            size = ftplib.parse150(resp)
        return conn, size

    def _start_transfer(self, cmd, rest):
        if rest is not None:
            self.sendcmd("REST %s" % rest)
        resp = self.sendcmd(cmd)
        # Some servers reply 2xx before 1xx (RFC 959 allows either order in theory).
        if resp[0] == "2":
            resp = self.getresp()
        if resp[0] != "1":
            raise ftplib.error_reply(resp)
        return resp


def emit(obj):
    print(json.dumps(obj), flush=True)


def do_get(ftp, remote, local, rest=None):
    mode = "ab" if rest else "wb"
    total = 0
    with open(local, mode) as f:
        def write(block):
            nonlocal total
            total += len(block)
            f.write(block)
        reply = ftp.retrbinary("RETR " + remote, write, rest=rest)
    emit({"op": "get", "bytes": total, "rest": rest or 0, "reply": reply, "data_peer": ftp.data_peer})


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mode", choices=MODES, default="epsv")
    p.add_argument("--trust-pasv-ip", action="store_true",
                   help="connect to the address in the 227 reply instead of the control peer")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("command", choices=("get", "put", "list", "rest-get", "pending-get", "abort-get", "raw"))
    p.add_argument("args", nargs="*")
    a = p.parse_args(argv)

    need = {"get": 2, "put": 2, "rest-get": 2, "pending-get": 2, "abort-get": 3}
    if a.command in need and len(a.args) != need[a.command]:
        p.error("%s takes %d arguments" % (a.command, need[a.command]))
    if a.command == "raw" and not a.args:
        p.error("raw takes at least one command")
    if a.command == "pending-get" and a.mode not in ("epsv", "pasv"):
        p.error("pending-get needs --mode epsv or pasv")

    ftp = Client(a.mode, a.trust_pasv_ip, a.timeout)
    try:
        ftp.connect(a.host, a.port)
        ftp.login(a.user, a.password)
        ftp.voidcmd("TYPE I")
        if a.command == "get":
            do_get(ftp, a.args[0], a.args[1])
        elif a.command == "rest-get":
            with open(a.args[1], "rb") as f:
                have = len(f.read())
            do_get(ftp, a.args[0], a.args[1], rest=have)
        elif a.command == "put":
            with open(a.args[0], "rb") as f:
                reply = ftp.storbinary("STOR " + a.args[1], f)
            emit({"op": "put", "reply": reply, "data_peer": ftp.data_peer})
        elif a.command == "list":
            names = ftp.nlst(*a.args[:1])
            emit({"op": "list", "names": names, "data_peer": ftp.data_peer})
        elif a.command == "pending-get":
            host, port = ftp.passive_address()
            emit({"event": "pending", "host": host, "port": port})
            if not sys.stdin.readline():
                raise RuntimeError("stdin closed before the go-ahead")
            total = 0
            with socket.create_connection((host, port), a.timeout) as conn, open(a.args[1], "wb") as f:
                conn.settimeout(a.timeout)
                resp = ftp._start_transfer("RETR " + a.args[0], None)
                while True:
                    block = conn.recv(1 << 16)
                    if not block:
                        break
                    total += len(block)
                    f.write(block)
            reply = ftp.voidresp()
            emit({"op": "get", "bytes": total, "reply": reply, "start": resp})
        elif a.command == "abort-get":
            # Start a download of a large file, read a little, abort with
            # ABOR sent as urgent data (ftplib's abort), then show that the
            # session goes on with a complete download of another file.
            conn = ftp.transfercmd("RETR " + a.args[0])
            conn.settimeout(a.timeout)
            got = conn.recv(1 << 16)
            # ftp.abort(), but tolerant of servers that send a stray
            # preliminary reply first (pure-ftpd sends "150 <stats>" when a
            # transfer is cut short): ABOR as urgent data, then replies up to
            # the first that is not 1xx.
            ftp.sock.sendall(b"ABOR\r\n", socket.MSG_OOB)
            replies = []
            for _ in range(4):
                line = ftp.getmultiline()
                replies.append(line)
                if line[:1] != "1":
                    break
            conn.close()
            # RFC 959: 426 for the transfer, then 226 for ABOR. Resynchronise
            # on a NOOP whatever the server sent.
            ftp.putcmd("NOOP")
            for _ in range(4):
                line = ftp.getmultiline()
                replies.append(line)
                if line.startswith("200"):
                    break
            emit({"event": "aborted", "bytes": len(got), "replies": replies})
            do_get(ftp, a.args[1], a.args[2])
        elif a.command == "raw":
            for cmd in a.args:
                try:
                    resp = ftp.sendcmd(cmd)
                except ftplib.Error as e:
                    resp = str(e)
                emit({"command": cmd.split(" ")[0], "reply": resp})
        try:
            ftp.quit()
        except (ftplib.Error, OSError):
            ftp.close()
    except ftplib.Error as e:
        emit({"error": str(e)})
        return 1
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        emit({"error": "%s: %s" % (type(e).__name__, e)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
