#!/usr/bin/env python3
"""Seed corpus for fuzz_frames: valid sessions as a client sends them.
Byte 0 of each file: auth (0 trust, 1 SCRAM, 2 md5, 3 cleartext) | chunk << 2.
Usage: make_corpus.py OUTDIR"""
import os, struct, sys

def startup(params, minor=0):
    body = struct.pack('!I', (3 << 16) | minor)
    for k, v in params:
        body += k.encode() + b'\0' + v.encode() + b'\0'
    body += b'\0'
    return struct.pack('!I', len(body) + 4) + body

def msg(t, body=b''):
    return t + struct.pack('!I', len(body) + 4) + body

def cstr(s):
    return s.encode() + b'\0'

SSL = struct.pack('!II', 8, 80877103)
GSS = struct.pack('!II', 8, 80877104)
CANCEL = struct.pack('!III', 16, 80877102, 1234) + b'\x01\x02\x03\x04'
SU = startup([('user', 'postgres'), ('database', 'postgres'), ('application_name', 'psql')])
q = msg(b'Q', cstr('SELECT 1')) + msg(b'X')
ext = (msg(b'P', cstr('') + cstr('SELECT $1::int') + struct.pack('!HI', 1, 23)) +
       msg(b'B', cstr('') + cstr('') + struct.pack('!HH', 1, 0) + struct.pack('!H', 1) +
           struct.pack('!I', 2) + b'42' + struct.pack('!HH', 1, 1)) +
       msg(b'D', b'P' + cstr('')) + msg(b'E', cstr('') + struct.pack('!I', 0)) + msg(b'S'))
copy = msg(b'Q', cstr('COPY t FROM STDIN')) + msg(b'd', b'1\t2\n') + msg(b'c') + msg(b'X')
scram_first = b'n,,n=,r=abcdefghijklmnopqrstuvwx'
scram = msg(b'p', cstr('SCRAM-SHA-256') + struct.pack('!I', len(scram_first)) + scram_first)
scram += msg(b'p', b'c=biws,r=abcdefghijklmnopqrstuvwxyz012345,p=' + b'A' * 44)
md5 = msg(b'p', cstr('md5' + '0' * 32))
clear = msg(b'p', cstr('secret'))

seeds = {
    'trust_query': bytes([0]) + SU + q,
    'trust_ssl_gss': bytes([8 << 2]) + GSS + SSL + SU + ext + msg(b'X'),
    'trust_bytewise': bytes([1 << 2]) + SSL + SU + q,
    'trust_pieces7': bytes([7 << 2]) + SU + copy,
    'proto32': bytes([0]) + startup([('user', 'postgres'), ('_pq_.x', '1'),
                                      ('options', '-c work_mem=64MB')], minor=2) + q,
    'proto39': bytes([0]) + startup([('user', 'u'), ('database', 'd')], minor=9),
    'cancel': bytes([0]) + CANCEL,
    'cancel32': bytes([0]) + struct.pack('!III', 44, 80877102, 1) + b'k' * 32,
    'scram': bytes([1]) + SU + scram + q,
    'md5': bytes([2]) + SU + md5 + q,
    'cleartext': bytes([3 | (3 << 2)]) + SU + clear + ext,
    'replies': bytes([0]) + msg(b'E', b'SERROR\0C42P01\0Mno such table\0\0') +
               msg(b'S', cstr('TimeZone') + cstr('UTC')) + msg(b'Z', b'I'),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
