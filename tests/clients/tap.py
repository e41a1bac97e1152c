"""The ok/FAIL lines test_clients.sh counts, for the psycopg2 scripts."""


class Checker:
    def __init__(self, prefix):
        self.prefix, self.failed = prefix, 0

    def __call__(self, name, expected, actual):
        if expected == actual:
            print("ok   - %s: %s" % (self.prefix, name))
        else:
            self.failed += 1
            print("FAIL - %s: %s: expected %r, got %r" % (self.prefix, name, expected, actual))
