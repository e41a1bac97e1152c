"""Reading WebAssembly binaries: the LEB128 integers and names of the format.

Shared by the build-time locators (gen-stack-limit.py, locate-sessions.py).
"""


def leb_u(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def leb_s(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            if x & 0x40:
                r -= 1 << s
            return r, i


def name(b, i):
    n, i = leb_u(b, i)
    return b[i:i + n].decode("utf-8", "replace"), i + n
