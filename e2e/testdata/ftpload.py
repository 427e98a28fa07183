#!/usr/bin/python3
"""ftpload.py: many concurrent Python ftplib sessions for ftpgate's end-to-end tests.

It reads one JSON object per line on stdin, each a session to start at once in a thread of its
own, and prints one JSON object per line on stdout for each session when it ends (and, if asked,
when its download starts). It exits when stdin is closed and every session has ended. The data
connection modes are those of ftpclient.py (EPSV, PASV, EPRT, PORT, chosen explicitly), whose
Client it uses, without its transcript.

A session line:
  {"id": 7, "host": "198.18.62.1", "port": 21, "mode": "epsv", "trust_pasv_ip": false,
   "file": "one.bin", "rate": 0, "notify": false}
rate limits the download to that many bytes per second (0: no limit); notify prints
{"id": 7, "event": "transferring"} when the first data arrives. With "hold": true the session
logs in, prints {"id": 7, "event": "ready"} and waits for the line {"release": true} before it
downloads, so that many sessions are open at once before any transfer starts.

A result line:
  {"id": 7, "ok": true, "error": "", "bytes": 1048576, "sha256": "...", "reply": "226 ...",
   "data_port": 40123, "data_peer": "198.18.62.1", "quit": "221 Goodbye.", "start": 1.23,
   "end": 1.57}
data_port is the port of a passive data connection (0 for active modes); start and end are
seconds since the script started. The session's password is never printed.
"""

import argparse
import ftplib
import hashlib
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ftpclient  # noqa: E402

T0 = time.monotonic()
OUT = threading.Lock()
RELEASE = threading.Event()


def emit(obj):
    with OUT:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Quiet(ftpclient.Client):
    """ftpclient.Client without the transcript: hundreds of sessions run at once."""

    putcmd = ftplib.FTP.putcmd
    getresp = ftplib.FTP.getresp

    def passive_address(self):
        host, port = super().passive_address()
        self.data_port = port
        return host, port


def session(job, user, password, timeout):
    res = {"id": job["id"], "ok": False, "error": "", "bytes": 0, "sha256": "", "reply": "",
           "data_port": 0, "data_peer": "", "quit": "", "start": time.monotonic() - T0}
    rate = float(job.get("rate", 0))
    ftp = Quiet(job["mode"], job.get("trust_pasv_ip", False), timeout)
    ftp.data_port = 0
    phase = "connect"
    try:
        ftp.connect(job["host"], job.get("port", 21))
        phase = "login"
        ftp.login(user, password)
        phase = "TYPE I"
        ftp.voidcmd("TYPE I")
        if job.get("hold"):
            emit({"id": job["id"], "event": "ready"})
            phase = "hold"
            if not RELEASE.wait(timeout * 4):
                raise RuntimeError("no release within %ss" % (timeout * 4))
        phase = "RETR"
        h = hashlib.sha256()
        began = None

        def block(b):
            nonlocal began
            if began is None:
                began = time.monotonic()
                if job.get("notify"):
                    emit({"id": job["id"], "event": "transferring"})
            h.update(b)
            res["bytes"] += len(b)
            if rate > 0:
                ahead = res["bytes"] / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

        res["reply"] = ftp.retrbinary("RETR " + job["file"], block, blocksize=1 << 16)
        res["sha256"] = h.hexdigest()
        res["data_port"] = ftp.data_port
        res["data_peer"] = ftp.data_peer or ""
        res["ok"] = res["reply"].startswith("226")
        phase = "QUIT"
        try:
            res["quit"] = ftp.quit()
        except (ftplib.Error, OSError, EOFError) as e:
            res["quit"] = "%s: %s" % (type(e).__name__, e)
            ftp.close()
    except ftplib.Error as e:
        res["error"] = "%s: %s" % (phase, e)
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        res["error"] = "%s: %s: %s" % (phase, type(e).__name__, e)
    finally:
        ftp.close()
    res["end"] = time.monotonic() - T0
    emit(res)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args(argv)
    threads = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        job = json.loads(line)
        if job.get("release"):
            RELEASE.set()
            continue
        if job.get("mode") not in ftpclient.MODES:
            emit({"id": job.get("id"), "ok": False, "error": "unknown mode %r" % job.get("mode")})
            continue
        t = threading.Thread(target=session, args=(job, a.user, a.password, a.timeout), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
