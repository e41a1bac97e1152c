#!/usr/bin/env python3
"""Send each SQL file as ONE simple-protocol Query message (as PGlite's
db.exec() does) over a PostgreSQL Unix socket, trust authentication, and
print "file<TAB>ms" per file: the time from sending the Query to its
ReadyForQuery. Stops at the first ErrorResponse (exit 1).

    sql-suite-onequery.py SOCKET_DIR DATABASE FILE...
"""
import os, socket, struct, sys, time

def main():
    sockdir, db, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(sockdir, '.s.PGSQL.5432'))
    buf = bytearray()

    def msg():
        while True:
            if len(buf) >= 5:
                n = struct.unpack('!I', buf[1:5])[0]
                if len(buf) >= n + 1:
                    t, body = buf[0:1], bytes(buf[5:n + 1])
                    del buf[:n + 1]
                    return t, body
            d = s.recv(1 << 16)
            if not d:
                sys.exit('connection closed')
            buf.extend(d)

    def until_ready(what):
        err = None
        while True:
            t, body = msg()
            if t == b'E' and err is None:
                err = body
            elif t == b'R' and struct.unpack('!I', body[:4])[0] != 0:
                sys.exit('authentication other than trust is not supported')
            elif t == b'Z':
                if err:
                    fields = dict((f[:1], f[1:].decode()) for f in err.split(b'\0') if f)
                    sys.exit(f"{what}: {fields.get(b'S')} {fields.get(b'C')} {fields.get(b'M')}")
                return

    params = b'user\0postgres\0database\0' + db.encode() + b'\0\0'
    s.sendall(struct.pack('!II', 8 + len(params), 196608) + params)
    until_ready('startup')
    for f in files:
        sql = open(f, 'rb').read() + b'\0'
        t0 = time.perf_counter()
        s.sendall(b'Q' + struct.pack('!I', 4 + len(sql)) + sql)
        until_ready(os.path.basename(f))
        print(f'{os.path.basename(f)}\t{(time.perf_counter() - t0) * 1e3:.1f}', flush=True)
    s.sendall(b'X\0\0\0\4')
    s.close()

main()
