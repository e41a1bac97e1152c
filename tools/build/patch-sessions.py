#!/usr/bin/env python3
"""Locate, by content, what [sessions] needs in pglite.wasm, and patch the module.

usage: patch-sessions.py PGLITE.wasm [OUT.wasm OUT.json]

Without OUT it only locates, on the module given, and prints what it found.

pglite.wasm runs as several PostgreSQL backends of one cluster, one wasm
instance each (../shared/multisession/STUDY.md). The upstream build assumes
one process: getpid() is a constant, kill() reaches only that constant, and
the latch wait never blocks (its poll() was compiled away). This script
finds each of those places by what the code is, never by a hand-written
index, and rewrites the module so that the host can give each instance a pid
of its own, route signals between instances and block a waiting backend:

  getpid()               returns a new exported mutable global, pglitec_pid
                         (42, the constant it replaces, until the host sets
                         it), so MyProcPid is the instance's own pid.
  the pid                main() sets MyProcPid to the constant
                         (InitProcessGlobals' MyProcPid = getpid(),
                         inlined); the signal wrapper's re-raise and the
                         "... called in child process" checks of proc_exit,
                         ProcKill and AuxiliaryProcKill compare with it:
                         all use pglitec_pid.
  kill()                 a pid other than the caller's goes to a new import,
                         env.pglitec_kill(pid, sig) -> 0 or -errno, the
                         host's signal router; the caller's own pid still
                         raises in place.
  raise()                exported as pglitec_raise, so the host delivers a
                         routed signal on the target's own thread, honouring
                         its handlers and signal mask.
  nanosleep()            a poll() with no fds for the time asked, instead of
                         Emscripten's busy loop on the clock: a backend in
                         pg_usleep lets the others run.
  InitSync()             every backend keeps its own pendingOps table, as
                         a standalone backend does: there is no
                         checkpointer to forward fsync and unlink requests
                         to (one that never comes is retried for ever).
  on_exit_reset()        a new function, exported as pglitec_on_exit_reset,
                         zeroes the exit-callback counters, as a forked
                         child's on_exit_reset() does: a clone must not run
                         its parent's exit callbacks (removing pg_dynshmem,
                         postmaster.pid).
  RESUME_CANCEL_INTERRUPTS  another, pglitec_resume_cancel_interrupts: a
                         clone's PostgresMain returns to the host inside
                         its first read of a command, with cancel held off.
  ProcessInterrupts()    first calls a new import, env.pglitec_interrupt_point(),
                         where the host may switch sessions.
  the fork point         main() calls a new import, env.pglitec_fork_point(),
                         just before InitProcess(): where the host takes the
                         image it clones more backends from, which then run
                         what BackendMain runs after the startup packet:
                         InitProcess() and PostgresMain(db, user), exported
                         as pglitec_InitProcess and pglitec_PostgresMain,
                         then the first ReadyForQuery(dest), exported as
                         pglitec_ReadyForQuery; ProcessNotifyInterrupt, for
                         an idle session, as pglitec_ProcessNotifyInterrupt.
  XLogBackgroundFlush()  exported as pglitec_XLogBackgroundFlush, with the
                         address of WalWriterDelay as the global
                         pglitec_WalWriterDelay: there is no WAL writer
                         process, so the host runs what it does every
                         wal_writer_delay in a parked backend (else an
                         asynchronous commit's WAL is flushed only by a
                         later synchronous one, and until then its rows get
                         no hint bits).
  WaitEventSetWait()     where upstream PostgreSQL calls poll() on the wait
                         set, the translated module only read set->nevents;
                         it calls env.__syscall_poll(set->pollfds,
                         set->nevents, cur_timeout) again, so a backend
                         waiting for a lock, a latch or a timeout blocks in
                         the host (which can run another backend meanwhile)
                         instead of spinning.

Adding an import moves every defined function up by one, so every function
index in the module (calls, ref.func, element segments, exports, the start
function) is renumbered; OUT.json describes OUT.wasm's numbering, which is
what wasm2c names its functions by (w2c_fN):

  child_process_kinds[]  PostgreSQL's {name, main_fn, shmem_attach} table
                         (postmaster/launch_backend.c): the entry named
                         "backend" is followed two entries later by
                         "autovacuum launcher" (B_BACKEND,
                         B_DEAD_END_BACKEND, B_AUTOVAC_LAUNCHER).
  BackendMain            that entry's main_fn, a function table index,
                         resolved through the element segments.
  InitProcess,           the last two direct calls of BackendMain, after its
  PostgresMain           call of the exported ProcessStartupPacket; main()
                         (the single-user path) must call the same two, in
                         the same order, or the shape is not the expected one.

Anything not found, or found with another shape, stops with a message that
names it: a runtime bump re-runs this, not a hand search. OUT.json records
the SHA-256 of both modules, so a consumer can check that it describes the
runtime it is built against.
"""
import hashlib
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wasmfile import (Module, WasmError, instructions, leb_s, leb_u,  # noqa: E402
                      name, skip_locals, sleb, uleb)

PROG = "patch-sessions"


def fail(msg):
    sys.exit(f"{PROG}: {msg}")


def functions_naming(m, tail):
    """Functions that load the address of a string ending in tail (a string
    or, the linker sharing tails, the tail of a longer one)."""
    want = tail.encode() + b"\0"
    funcs = set()
    for off, d in m.data:
        k = d.find(want)
        while k >= 0:
            start = d.rfind(b"\0", 0, k) + 1
            for addr in range(off + start, off + k + 1):
                funcs.update(m.const_users(addr))
            k = d.find(want, k + 1)
    return sorted(funcs)


def locate(m):
    found = {}
    # child_process_kinds[B_BACKEND]
    launcher = m.cstrings("autovacuum launcher")
    backend = set(m.cstrings("backend"))
    entries = []
    for s in launcher:
        for w in m.words_equal(s):
            e = w - 24
            if m.word(e) in backend:
                entries.append(e)
    if len(entries) != 1:
        fail(f"child_process_kinds[]: expected one \"backend\" entry two before "
             f"\"autovacuum launcher\", found {len(entries)}")
    found["child_process_kinds_backend"] = entries[0]
    slot = m.word(entries[0] + 4)
    if slot not in m.elems:
        fail(f"child_process_kinds[B_BACKEND].main_fn = table index {slot}, "
             "which no element segment fills")
    backend_main = m.elems[slot]
    found["BackendMain"] = backend_main
    found["BackendMain_table_index"] = slot

    psp = m.exports.get("ProcessStartupPacket")
    if psp is None:
        fail("ProcessStartupPacket is not exported")
    calls = m.calls(backend_main)
    if psp not in calls:
        fail(f"BackendMain (function {backend_main}) does not call ProcessStartupPacket "
             f"(function {psp}): not the expected BackendMain")
    after = calls[len(calls) - 1 - calls[::-1].index(psp) + 1:]
    if len(after) < 2:
        fail("BackendMain makes fewer than two calls after ProcessStartupPacket")
    init_process, postgres_main = after[-2], after[-1]
    main = m.exports.get("__main_argc_argv")
    if main is None:
        fail("__main_argc_argv is not exported")
    mc = m.calls(main)
    pairs = [k for k in range(len(mc) - 1)
             if mc[k] == init_process and mc[k + 1] == postgres_main]
    if not pairs:
        fail(f"main (function {main}) does not call InitProcess ({init_process}) then "
             f"PostgresMain ({postgres_main}) as BackendMain does: the single-user path "
             "has another shape")
    # void InitProcess(void); void PostgresMain(const char *dbname,
    # const char *username) (tcop/tcopprot.h).
    for what, f, want in (("InitProcess", init_process, ("", "")),
                          ("PostgresMain", postgres_main, ("ii", ""))):
        if m.signature(f) != want:
            fail(f"{what} (function {f}) has the wasm signature {m.signature(f)}, "
                 f"expected {want}")
    found["InitProcess"] = init_process
    found["PostgresMain"] = postgres_main
    found["main"] = main

    # ReadyForQuery(dest): what PGlite's pgl_sendConnData ends with,
    # ReadyForQuery(DestRemote = 2), after AuthenticationOk and
    # BackendKeyData; a cloned backend's PostgresMain sends those itself
    # and returns to the host before its main loop sends the first
    # ReadyForQuery.
    conn = m.exports.get("pgl_sendConnData")
    if conn is None:
        fail("pgl_sendConnData is not exported")
    cs, ce = m.body(conn)
    cc = [(k, leb_u(m.b, k + 1)[0]) for k, op, _ in
          instructions(m.b, skip_locals(m.b, cs), ce, conn) if op == 0x10]
    if not cc or m.b[cc[-1][0] - 2:cc[-1][0]] != b"\x41\x02" or \
            m.signature(cc[-1][1]) != ("i", ""):
        fail(f"pgl_sendConnData (function {conn}) does not end with ReadyForQuery(DestRemote)")
    found["ReadyForQuery"] = cc[-1][1]

    # InitSync() (inlined into BaseInit, the function naming the "Pending
    # Ops Table"): only a standalone backend or the checkpointer keeps a
    # pendingOps table; a backend under a postmaster forwards its fsync and
    # unlink requests to the checkpointer, and with none it retries for
    # ever. Every backend here is its own checkpointer (PGlite checkpoints
    # inline): the test "IsUnderPostmaster && MyBackendType !=
    # B_CHECKPOINTER" goes.
    iup = m.global_addr("IsUnderPostmaster")
    if iup is None:
        fail("IsUnderPostmaster is not exported")
    fs = functions_naming(m, "Pending Ops Table")
    sync_re = re.compile(re.escape(b"\x41" + sleb(iup) + b"\x2d\x00\x00\x41\x01\x46") +
                         rb"(?=\x04\x40\x41" + LEB + rb"\x28\x02\x00\x41\x0b\x47\x0d\x01\x0b)", re.S)
    hits = [(f, x.start()) for f in fs for x in sync_re.finditer(m.body_bytes(f))]
    if len(hits) != 1:
        fail(f"InitSync(): expected one \"IsUnderPostmaster && MyBackendType != "
             f"B_CHECKPOINTER\" before the Pending Ops Table, found {len(hits)} in {fs}")
    found["InitSync"] = hits[0][0]
    found["InitSync_site"] = hits[0][1]

    # nanosleep(req, rem): Emscripten's is a busy loop on the clock, which
    # would hold the host's lock (no other backend runs) for the whole of a
    # pg_usleep. It becomes a poll() with no fds for the time asked.
    ns = m.exports.get("nanosleep")
    if ns is None or m.signature(ns) != ("ii", "i"):
        fail("nanosleep is not exported as (i32, i32) -> i32")
    found["nanosleep"] = ns

    # ProcessNotifyInterrupt(flush) (async.c, ProcessIncomingNotify inlined):
    # the one function naming "ProcessIncomingNotify: done". The host runs it
    # for an idle session that a NOTIFY signalled, as PostgreSQL's backend
    # does from its client read, so an idle listener gets the notification
    # at once.
    fs = [f for f in functions_naming(m, "ProcessIncomingNotify: done")
          if m.signature(f) == ("i", "")]
    if len(fs) != 1:
        fail(f"ProcessNotifyInterrupt: expected one (i32) function naming "
             f"\"ProcessIncomingNotify: done\", found {fs}")
    found["ProcessNotifyInterrupt"] = fs[0]

    # QueryCancelHoldoffCount (not exported), as ProcessInterrupts reads it:
    #   if (QueryCancelPending && QueryCancelHoldoffCount != 0)
    #       InterruptPending = true;   /* cancel when the read is over */
    pi = m.exports.get("ProcessInterrupts")
    qcp, ip = m.global_addr("QueryCancelPending"), m.global_addr("InterruptPending")
    if pi is None or qcp is None or ip is None:
        fail("ProcessInterrupts, QueryCancelPending or InterruptPending is not exported")
    hold_re = re.compile(re.escape(b"\x41" + sleb(qcp) + b"\x28\x02\x00\x45\x0d\x00\x41") +
                         LEB + re.escape(b"\x28\x02\x00\x45\x0d\x00\x41" + sleb(ip) +
                                         b"\x41\x01\x36\x02\x00"), re.S)
    hits = _match_at_instruction(m, pi, hold_re)
    if len(hits) != 1:
        fail(f"ProcessInterrupts (function {pi}): expected one \"QueryCancelPending && "
             f"QueryCancelHoldoffCount\" test, found {len(hits)}")
    found["QueryCancelHoldoffCount"] = leb_s(hits[0].group(1), 0)[0]

    # The counters of PostgreSQL's exit callbacks (storage/ipc/ipc.c:
    # on_proc_exit_index, before_shmem_exit_index, on_shmem_exit_index),
    # each read first by its registration function, which compares it with
    # MAX_ON_EXITS (20) and reports "out of ... slots". A forked child zeroes
    # them (on_exit_reset: the postmaster's callbacks are not its own).
    found["exit_indexes"] = []
    for kind in ("on_proc_exit", "before_shmem_exit", "on_shmem_exit"):
        fs = functions_naming(m, f"out of {kind} slots")
        if len(fs) != 1:
            fail(f"{kind}(): expected one function reporting \"out of {kind} slots\", found {fs}")
        body = m.body_bytes(fs[0])
        x = re.match(rb"\x01\x01\x7f\x41" + LEB + rb"\x28\x02\x00\x22(.)\x41\x14\x48\x04\x40\x41" + LEB,
                     body, re.S)
        if not x or x.group(1) != x.group(3):
            fail(f"{kind}() (function {fs[0]}) does not start by comparing its counter with "
                 "MAX_ON_EXITS")
        found["exit_indexes"].append(leb_s(x.group(1), 0)[0])

    # XLogBackgroundFlush() (access/transam/xlog.c), the WAL writer's
    # work: the one () -> i32 function that reads the variables of both
    # wal_writer_flush_after and wal_writer_delay. A variable's address is
    # in its GUC's entry (struct config_int) at the offset where work_mem's
    # entry holds the exported work_mem.
    def guc_entries(guc):
        return [w for a in m.cstrings(guc) for w in m.words_equal(a)]
    work_mem = m.global_addr("work_mem")
    offs = sorted({o for e in guc_entries("work_mem") for o in range(4, 256, 4)
                   if work_mem is not None and m.word(e + o) == work_mem})
    if len(offs) != 1:
        fail(f"the GUC table: expected work_mem's entry to hold the work_mem variable at one "
             f"offset, found {offs}")
    variables = {}
    for guc in ("wal_writer_flush_after", "wal_writer_delay"):
        addrs = {m.word(e + offs[0]) for e in guc_entries(guc)} - {None, 0}
        if len(addrs) != 1:
            fail(f"the GUC table: expected one variable of {guc}, found {sorted(addrs)}")
        variables[guc] = addrs.pop()
    fs = sorted(set(f for f in m.const_users(variables["wal_writer_flush_after"])
                    if m.signature(f) == ("", "i")) &
                set(m.const_users(variables["wal_writer_delay"])))
    if len(fs) != 1:
        fail(f"XLogBackgroundFlush: expected one () -> i32 function reading "
             f"wal_writer_flush_after and wal_writer_delay, found {fs}")
    found["XLogBackgroundFlush"] = fs[0]
    found["WalWriterDelay"] = variables["wal_writer_delay"]

    getpid = m.exports.get("getpid")
    if getpid is None:
        fail("getpid is not exported")
    gb = m.body_bytes(getpid)
    # locals: 0 groups; i32.const N; end
    if len(gb) < 3 or gb[0] != 0 or gb[1] != 0x41 or gb[-1] != 0x0B:
        fail("getpid() is not a constant: the runtime has real process ids")
    pid, k = leb_s(gb, 2)
    if k != len(gb) - 1:
        fail("getpid() is not a constant: the runtime has real process ids")
    found["getpid_constant"] = pid
    found["getpid"] = getpid

    # Where PostgreSQL compares its pid with that constant: the signal
    # wrapper's re-raise and proc_exit load MyProcPid; ProcKill and
    # AuxiliaryProcKill compare MyProc->pid. A backend with a pid of its own
    # needs each patched, or it takes itself for a forked child and PANICs.
    mypid = m.global_addr("MyProcPid")
    if mypid is None:
        fail("MyProcPid is not exported")
    found["MyProcPid"] = mypid
    sites = m.compares_with(mypid, pid)
    if len(sites) != 2:
        fail(f"expected MyProcPid to be compared with {pid} in two functions (proc_exit, "
             f"wrapper_handler), found {len(sites)}: {sites}")
    child = functions_naming(m, " called in child process")
    if len(child) < 3:
        fail(f"expected proc_exit, ProcKill and AuxiliaryProcKill to report \"... called in "
             f"child process\", found {child}")
    found["pid_compares"] = sorted(set(sites) | set(child))
    # Where the constant is stored into MyProcPid (InitProcessGlobals'
    # MyProcPid = getpid(), inlined into main()): the pid a process starts
    # with.
    store = re.compile(re.escape(b"\x41" + sleb(mypid) + b"\x41" + sleb(pid) +
                                 b"\x36\x02\x00"), re.S)
    stores = sorted({m.func_at(x.start()) for x in store.finditer(m.b)} - {None})
    if stores != [main]:
        fail(f"expected main() (function {main}), and nothing else, to set MyProcPid to "
             f"{pid}, found {stores}")
    found["MyProcPid_store"] = main
    return found


# ---- the places to patch ------------------------------------------------

LEB = rb"([\x80-\xff]*[\x00-\x7f])"


def _leb(g):
    return leb_u(g, 0)[0]


def _match_at_instruction(m, func, pattern):
    """The one match of a regex in func's body that starts at an instruction."""
    s, e = m.body(func)
    starts = m.decode(func)[1]
    hits = [x for x in pattern.finditer(m.b[s:e]) if s + x.start() in starts]
    return hits


def locate_patches(m, found):
    b = m.b
    pid = found["getpid_constant"]
    pidb = re.escape(bytes([0x41]) + sleb(pid))

    # kill(pid, sig): if (pid == PID) return raise(sig); errno = EPERM; return -1;
    # (Emscripten's libc; EPERM is 63 in its errno numbering.)
    kill_re = re.compile(rb"\x00\x20\x00" + pidb + rb"\x46\x04\x40\x20\x01\x10" + LEB +
                         rb"\x0f\x0b\x41" + LEB + rb"\x41\x3f\x36\x02\x00\x41\x7f\x0b\Z", re.S)
    kills = []
    for k in range(len(m.bodies)):
        s, e = m.bodies[k]
        if e - s < 40:
            x = kill_re.match(b, s, e)
            if x:
                kills.append((k + m.nimp, _leb(x.group(1)), leb_s(x.group(2), 0)[0]))
    if len(kills) != 1:
        fail(f"kill(): expected one function \"if (pid == {pid}) return raise(sig); "
             f"errno = EPERM; return -1\", found {len(kills)}")
    kill, raise_, errno = kills[0]
    if m.signature(kill) != ("ii", "i") or m.signature(raise_) != ("i", "i"):
        fail(f"kill() (function {kill}) or raise() (function {raise_}) has an unexpected signature")
    found.update(kill=kill, raise_=raise_, errno=errno)

    # WaitEventSetWait(set, timeout, occurred, nevents, wait_event_info), the
    # function WaitLatch calls last. Its prologue reads the start time when
    # timeout >= 0 into a local, negated:
    #   if (timeout >= 0) { clock_gettime(CLOCK_MONOTONIC, &ts); T = -(ts.tv_sec*1e9) - ts.tv_nsec; }
    # and where poll() was, it reads set->nevents (offset 4) as the result,
    # after reading and dropping set->pollfds (offset 28):
    #   drop(set->pollfds); block; rc = set->nevents; if (rc < 0) { if (errno == EINTR) ...
    waitlatch = m.exports.get("WaitLatch")
    clock = m.exports.get("clock_gettime")
    if waitlatch is None or clock is None:
        fail("WaitLatch or clock_gettime is not exported")
    wl_calls = m.calls(waitlatch)
    if not wl_calls:
        fail("WaitLatch calls nothing: not the expected WaitLatch")
    wesw = wl_calls[-1]
    if m.signature(wesw) != ("iiiii", "i"):
        fail(f"WaitEventSetWait (function {wesw}, WaitLatch's last call) has the wasm "
             f"signature {m.signature(wesw)}, expected (iiiii)->i")
    pro = _match_at_instruction(m, wesw, re.compile(
        rb"\x23\x00\x41" + LEB + rb"\x6b\x22(?P<s0>[\x00-\x7f])\x24\x00"
        rb"\x20\x01\x41\x00\x4e\x04\x40\x41\x01\x20(?P<s1>[\x00-\x7f])\x41\x10\x6a\x10"
        rb"(?P<clock>[\x80-\xff]*[\x00-\x7f])\x1a\x20(?P<s2>[\x00-\x7f])\x29\x03\x10\x42\x80\xec\x94\xa3\x7c\x7e"
        rb"\x20(?P<s3>[\x00-\x7f])\x34\x02\x18\x7d\x21(?P<t>[\x00-\x7f])\x0b", re.S))
    if len(pro) != 1:
        fail(f"WaitEventSetWait (function {wesw}): the start-time prologue "
             f"(clock_gettime into a negated local when timeout >= 0) is not there")
    x = pro[0]
    frame = x.group("s0")[0]
    if not (x.group("s1") == x.group("s2") == x.group("s3") == bytes([frame])) \
            or _leb(x.group("clock")) != clock:
        fail(f"WaitEventSetWait (function {wesw}): the start-time prologue has another shape")
    site = _match_at_instruction(m, wesw, re.compile(
        rb"\x20\x00\x28\x02\x1c\x1a\x02\x40\x20\x00\x28\x02\x04\x22(?P<rc>[\x00-\x7f])"
        rb"\x41\x00\x48\x04\x40\x41" + re.escape(sleb(errno)) +
        rb"\x28\x02\x00\x41\x1b\x46", re.S))
    if len(site) != 1:
        fail(f"WaitEventSetWait (function {wesw}): the compiled-away poll() "
             f"(rc = set->nevents, then the EINTR test) is not there once ({len(site)})")
    # The error it raises there names "poll": the site is the wait set's poll.
    s, _ = m.body(wesw)
    after = m.b[s + site[0].end(): s + site[0].end() + 80]
    named = [a for a in re.finditer(rb"\x41" + LEB + rb"\x36\x02\x00", after)
             if m.cstring_at(_leb(a.group(1))) == "poll"]
    if not named:
        fail(f"WaitEventSetWait (function {wesw}): the error after the poll site does "
             "not name poll()")
    poll_imp = [k for k, (mod, nm, _) in enumerate(m.func_imports)
                if mod == "env" and nm == "__syscall_poll"]
    if len(poll_imp) != 1:
        fail("env.__syscall_poll is not imported")
    found.update(WaitEventSetWait=wesw, wait_frame_local=frame, wait_start_local=x.group("t")[0],
                 wait_rc_local=site[0].group("rc")[0], wait_site=site[0].start(),
                 clock_gettime=clock, syscall_poll=poll_imp[0])


# ---- rewriting ----------------------------------------------------------

# The imports the patch adds, after the module's own, in this order. In a
# patched body, NEW_IMPORT + k stands for the k-th until renumbering.
NEW_IMPORTS = (
    ("pglitec_kill", (b"\x7f\x7f", b"\x7f")),   # (pid, sig) -> 0 or -errno
    ("pglitec_fork_point", (b"", b"")),          # ()
    ("pglitec_interrupt_point", (b"", b"")),     # ()
)
NEW_IMPORT = 1 << 31
KILL, FORK_POINT, INTERRUPT_POINT = NEW_IMPORT, NEW_IMPORT + 1, NEW_IMPORT + 2


def nlocals(m, func, body):
    """Parameters plus declared locals of func."""
    n = len(m.types[m.ftypes[func - m.nimp]][0])
    g, i = leb_u(body, 0)
    for _ in range(g):
        c, i = leb_u(body, i)
        n += c
        i += 1
    return n


def add_i32_local(body):
    """body with one more i32 local (the last index) declared."""
    g, i = leb_u(body, 0)
    return uleb(g + 1) + body[i:skip_locals(body, 0)] + b"\x01\x7f" + body[skip_locals(body, 0):]


def patched_bodies(m, found, gpid):
    """{func: new body in the old numbering (NEW_IMPORT + k for the new imports)}."""
    out = {}
    G = b"\x23" + uleb(gpid)
    out[found["getpid"]] = b"\x00" + G + b"\x0b"

    cmp_re = re.compile(re.escape(b"\x41" + sleb(found["getpid_constant"])) + rb"(?=[\x46\x47])", re.S)
    for f in found["pid_compares"]:
        s, e = m.body(f)
        body = m.b[s:e]
        starts = m.decode(f)[1]
        hits = [x for x in cmp_re.finditer(body) if s + x.start() in starts]
        if len(hits) != 1:
            fail(f"function {f}: expected one compare with the pid {found['getpid_constant']}, "
                 f"found {len(hits)}")
        out[f] = body[:hits[0].start()] + G + body[hits[0].end():]

    # nanosleep(req, rem): ms = clamp(req->tv_sec * 1000 + ceil(req->tv_nsec
    # / 1e6), 0, INT32_MAX); __syscall_poll(0, 0, ms); return 0. (struct
    # timespec is {int64 tv_sec; int32 tv_nsec} on wasm32 Emscripten.)
    MAX = sleb(2147483647)
    out[found["nanosleep"]] = (
        b"\x01\x01\x7e"
        + b"\x20\x00\x29\x03\x00\x42" + sleb(1000) + b"\x7e"
        + b"\x20\x00\x34\x02\x08\x42" + sleb(999999) + b"\x7c\x42" + sleb(1000000) + b"\x7f\x7c"
        + b"\x22\x02\x42\x00\x20\x02\x42\x00\x55\x1b"          # max(ms, 0)
        + b"\x22\x02\x42" + MAX + b"\x20\x02\x42" + MAX + b"\x53\x1b"  # min(ms, INT32_MAX)
        + b"\x21\x02\x41\x00\x41\x00\x20\x02\xa7\x10" + uleb(found["syscall_poll"])
        + b"\x1a\x41\x00\x0b")

    # InitSync: every backend keeps its own pendingOps.
    f = found["InitSync"]
    body = out.get(f, m.body_bytes(f))
    k = found["InitSync_site"]
    old = b"\x41" + sleb(m.global_addr("IsUnderPostmaster")) + b"\x2d\x00\x00\x41\x01\x46"
    if body[k:k + len(old)] != old:
        fail(f"InitSync (function {f}): the site moved")
    out[f] = body[:k] + b"\x41\x00" + body[k + len(old):]

    # MyProcPid = getpid() in main(): the pid the host gave the instance.
    f = found["MyProcPid_store"]
    s, e = m.body(f)
    body = m.b[s:e]
    head = b"\x41" + sleb(found["MyProcPid"])
    st_re = re.compile(re.escape(head + b"\x41" + sleb(found["getpid_constant"])) +
                       rb"(?=\x36\x02\x00)", re.S)
    hits = [x for x in st_re.finditer(body) if s + x.start() in m.decode(f)[1]]
    if len(hits) != 1:
        fail(f"main() (function {f}): expected one store of the pid into MyProcPid, "
             f"found {len(hits)}")
    body = body[:hits[0].start()] + head + G + body[hits[0].end():]
    # The fork point: main() calls pglitec_fork_point() just before
    # InitProcess(), where a backend of a running cluster starts
    # (BackendMain: the startup packet, then InitProcess, PostgresMain).
    calls = [(k, leb_u(body, k + 1)[0]) for k, op, _ in
             instructions(body, skip_locals(body, 0), len(body), f) if op == 0x10]
    sites = [calls[i][0] for i in range(len(calls) - 1)
             if calls[i][1] == found["InitProcess"] and calls[i + 1][1] == found["PostgresMain"]]
    if len(sites) != 1:
        fail(f"main() (function {f}): expected one call of InitProcess then PostgresMain, "
             f"found {len(sites)}")
    out[f] = body[:sites[0]] + b"\x10" + uleb(FORK_POINT) + body[sites[0]:]

    # ProcessInterrupts() first calls pglitec_interrupt_point(): a
    # CHECK_FOR_INTERRUPTS that found InterruptPending set, where the host
    # may let another session run (when no LWLock is held and no critical
    # section is open, which the host checks).
    f = m.exports.get("ProcessInterrupts")
    if f is None or f < m.nimp:
        fail("ProcessInterrupts is not an exported function")
    body = out.get(f, m.body_bytes(f))
    k = skip_locals(body, 0)
    out[f] = body[:k] + b"\x10" + uleb(INTERRUPT_POINT) + body[k:]

    # kill(pid, sig):
    #   if (pid == getpid()) return raise(sig);
    #   r = pglitec_kill(pid, sig); if (r < 0) { errno = -r; return -1; } return 0;
    E = b"\x41" + sleb(found["errno"])
    out[found["kill"]] = (
        b"\x01\x01\x7f"
        + b"\x20\x00" + G + b"\x46\x04\x40\x20\x01\x10" + uleb(found["raise_"]) + b"\x0f\x0b"
        + b"\x20\x00\x20\x01\x10" + uleb(KILL) + b"\x22\x02\x41\x00\x48\x04\x40"
        + E + b"\x41\x00\x20\x02\x6b\x36\x02\x00\x41\x7f\x0f\x0b"
        + b"\x41\x00\x0b")

    # WaitEventSetWait: before the block whose rc was set->nevents,
    #   cur = timeout > 0 ? max(timeout - elapsed_ms, 0) : timeout;
    #   rc = __syscall_poll(set->pollfds, set->nevents, cur);
    #   if (rc < 0) { errno = -rc; rc = -1; }
    # and the block starts from that rc.
    f = found["WaitEventSetWait"]
    s, e = m.body(f)
    body = m.b[s:e]
    cur = nlocals(m, f, body)
    body = add_i32_local(body)
    shift = len(body) - (e - s)
    k = found["wait_site"] + shift
    S = uleb(found["wait_frame_local"])
    T = uleb(found["wait_start_local"])
    R = uleb(found["wait_rc_local"])
    C = uleb(cur)
    old = b"\x20\x00\x28\x02\x1c\x1a\x02\x40\x20\x00\x28\x02\x04\x22" + R
    if body[k:k + len(old)] != old:
        fail(f"WaitEventSetWait (function {f}): the poll site moved")
    new = (
        b"\x20\x01\x41\x00\x4a\x04\x7f"
        + b"\x41\x01\x20" + S + b"\x41\x10\x6a\x10" + uleb(found["clock_gettime"]) + b"\x1a"
        + b"\x20\x01"
        + b"\x20" + S + b"\x34\x02\x18\x20" + S + b"\x29\x03\x10\x42" + sleb(1000000000)
        + b"\x7e\x20" + T + b"\x7c\x7c\x42" + sleb(1000000) + b"\x7f\xa7"
        + b"\x6b\x22" + C + b"\x41\x00\x20" + C + b"\x41\x00\x4a\x1b"
        + b"\x05\x20\x01\x0b\x21" + C
        + b"\x20\x00\x28\x02\x1c\x20\x00\x28\x02\x04\x20" + C
        + b"\x10" + uleb(found["syscall_poll"]) + b"\x21" + R
        + b"\x20" + R + b"\x41\x00\x48\x04\x40" + E + b"\x41\x00\x20" + R + b"\x6b\x36\x02\x00"
        + b"\x41\x7f\x21" + R + b"\x0b"
        + b"\x02\x40\x20" + R)
    out[f] = body[:k] + new + body[k + len(old):]
    return out


def renumber(m, body, func):
    """body with every defined function index moved up past the new imports."""
    parts = []
    last = 0
    nimp = m.nimp
    for k, op, end in instructions(body, skip_locals(body, 0), len(body), func):
        if op == 0x10 or op == 0xD2:
            idx, _ = leb_u(body, k + 1)
            if idx >= nimp:
                parts.append(body[last:k + 1])
                parts.append(uleb(nimp + idx - NEW_IMPORT if idx >= NEW_IMPORT
                                  else idx + len(NEW_IMPORTS)))
                last = end
    parts.append(body[last:])
    return b"".join(parts)


def section(sid, payload):
    return bytes([sid]) + uleb(len(payload)) + payload


def wname(s):
    s = s.encode()
    return uleb(len(s)) + s


def patch(m, found):
    b = m.b
    nimp = m.nimp
    up = lambda f: f + len(NEW_IMPORTS) if f >= nimp else f  # noqa: E731
    gpid = m.nglobimp + len(m.globals)
    bodies = patched_bodies(m, found, gpid)

    types = list(m.types)
    new_types = []
    imp_types = []
    for _, t in NEW_IMPORTS:
        if t not in types:
            types.append(t)
            new_types.append(t)
        imp_types.append(types.index(t))
    # Functions the patch adds, after the module's own, all () -> ():
    #   pglitec_on_exit_reset(): what a forked child's on_exit_reset() does
    #     to the counters (the registered callbacks are the parent's);
    #   pglitec_resume_cancel_interrupts(): RESUME_CANCEL_INTERRUPTS(), for
    #     a clone whose PostgresMain returned to the host in the middle of
    #     reading its first command, between HOLD_ and RESUME_ (else its
    #     statements could never be cancelled until its first ERROR).
    void_type = types.index((b"", b""))
    qchc = b"\x41" + sleb(found["QueryCancelHoldoffCount"])
    added = [
        ("pglitec_on_exit_reset",
         b"\x00" + b"".join(b"\x41" + sleb(a) + b"\x41\x00\x36\x02\x00"
                            for a in found["exit_indexes"]) + b"\x0b"),
        ("pglitec_resume_cancel_interrupts",
         b"\x00" + qchc + b"\x28\x02\x00\x04\x40" + qchc + qchc +
         b"\x28\x02\x00\x41\x01\x6b\x36\x02\x00\x0b\x0b"),
    ]
    first_added = nimp + len(NEW_IMPORTS) + len(m.bodies)
    for k, (nm, _) in enumerate(added):
        found[nm] = first_added + k
    out = [b[:8]]
    for sid, s, e in m.sections:
        p = b[s:e]
        if sid == 3:
            n, i = leb_u(p, 0)
            p = uleb(n + len(added)) + p[i:] + uleb(void_type) * len(added)
        elif sid == 1:
            n, i = leb_u(p, 0)
            p = uleb(n + len(new_types)) + p[i:] + b"".join(
                b"\x60" + uleb(len(a)) + a + uleb(len(r)) + r for a, r in new_types)
        elif sid == 2:
            n, i = leb_u(p, 0)
            p = uleb(n + len(NEW_IMPORTS)) + p[i:] + b"".join(
                wname("env") + wname(nm) + b"\x00" + uleb(t)
                for (nm, _), t in zip(NEW_IMPORTS, imp_types))
        elif sid == 6:
            n, i = leb_u(p, 0)
            p = uleb(n + 2) + p[i:] + b"\x7f\x01\x41" + sleb(found["getpid_constant"]) + \
                b"\x0b\x7f\x00\x41" + sleb(found["WalWriterDelay"]) + b"\x0b"
        elif sid == 7:
            n, i = leb_u(p, 0)
            ents = []
            for _ in range(n):
                ln, j = leb_u(p, i)
                nm = p[i:j + ln]
                kind = p[j + ln]
                idx, i = leb_u(p, j + ln + 1)
                ents.append(nm + bytes([kind]) + uleb(up(idx) if kind == 0 else idx))
            ents.append(wname("pglitec_pid") + b"\x03" + uleb(gpid))
            ents.append(wname("pglitec_raise") + b"\x00" + uleb(up(found["raise_"])))
            ents.append(wname("pglitec_InitProcess") + b"\x00" + uleb(up(found["InitProcess"])))
            ents.append(wname("pglitec_PostgresMain") + b"\x00" + uleb(up(found["PostgresMain"])))
            ents.append(wname("pglitec_ReadyForQuery") + b"\x00" + uleb(up(found["ReadyForQuery"])))
            ents.append(wname("pglitec_ProcessNotifyInterrupt") + b"\x00" +
                        uleb(up(found["ProcessNotifyInterrupt"])))
            ents.append(wname("pglitec_XLogBackgroundFlush") + b"\x00" +
                        uleb(up(found["XLogBackgroundFlush"])))
            ents.append(wname("pglitec_WalWriterDelay") + b"\x03" + uleb(gpid + 1))
            for k, (nm, _) in enumerate(added):
                ents.append(wname(nm) + b"\x00" + uleb(first_added + k))
            p = uleb(len(ents)) + b"".join(ents)
        elif sid == 8:
            idx, _ = leb_u(p, 0)
            p = uleb(up(idx))
        elif sid == 9:
            p = renumber_elems(p, up)
        elif sid == 10:
            parts = [uleb(len(m.bodies) + len(added))]
            for k, (bs, be) in enumerate(m.bodies):
                f = k + nimp
                nb = renumber(m, bodies.get(f, b[bs:be]), f)
                parts.append(uleb(len(nb)))
                parts.append(nb)
            for _, body in added:
                parts.append(uleb(len(body)))
                parts.append(body)
            p = b"".join(parts)
        elif sid == 0:
            nm, _ = name(p, 0)
            if nm == "name":
                continue  # function names by index would be wrong; none upstream
        out.append(section(sid, p))
    return b"".join(out)


def renumber_elems(p, up):
    n, i = leb_u(p, 0)
    out = [uleb(n)]
    for _ in range(n):
        start = i
        flags, i = leb_u(p, i)
        if flags not in (0, 1, 2, 3):
            fail(f"element segment kind {flags} is not handled")
        if flags == 2:
            _, i = leb_u(p, i)
        if flags in (0, 2):
            while p[i] != 0x0B:
                i += 1
            i += 1
        if flags in (1, 2, 3):
            i += 1  # elemkind
        out.append(p[start:i])
        cnt, i = leb_u(p, i)
        out.append(uleb(cnt))
        for _ in range(cnt):
            f, i = leb_u(p, i)
            out.append(uleb(up(f)))
    return b"".join(out)


def renumbered(found, nimp):
    """found, in the patched module's function numbering."""
    up = lambda f: f + len(NEW_IMPORTS) if f >= nimp else f  # noqa: E731
    out = dict(found)
    for k in ("BackendMain", "InitProcess", "PostgresMain", "main", "kill", "raise_",
              "WaitEventSetWait", "clock_gettime", "getpid", "MyProcPid_store", "ReadyForQuery",
              "InitSync", "ProcessNotifyInterrupt", "nanosleep", "XLogBackgroundFlush"):
        out[k] = up(found[k])
    out["pid_compares"] = [up(f) for f in found["pid_compares"]]
    for k, (nm, _) in enumerate(NEW_IMPORTS):
        out[nm + "_import"] = nimp + k
    for k in ("wait_site", "wait_frame_local", "wait_start_local", "wait_rc_local",
              "InitSync_site"):
        del out[k]
    out["raise"] = out.pop("raise_")
    return out


def write(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv):
    if len(argv) not in (2, 4):
        sys.exit(__doc__)
    try:
        with open(argv[1], "rb") as f:
            b = f.read()
    except OSError as e:
        fail(f"cannot read {argv[1]}: {e.strerror}")
    try:
        m = Module(b)
        found = locate(m)
        locate_patches(m, found)
        out = patch(m, found) if len(argv) == 4 else None
    except WasmError as e:
        fail(str(e))
    except (IndexError, struct.error, UnicodeDecodeError):
        fail(f"{argv[1]} is not a well-formed wasm module (it ends inside a section)")
    found["wasm_sha256"] = hashlib.sha256(b).hexdigest()
    if out is None:
        sys.stdout.write(json.dumps(found, indent=2, sort_keys=True) + "\n")
        return
    result = renumbered(found, m.nimp)
    result["source_wasm_sha256"] = result.pop("wasm_sha256")
    result["wasm_sha256"] = hashlib.sha256(out).hexdigest()
    write(argv[2], out)
    write(argv[3], (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())


if __name__ == "__main__":
    main(sys.argv)
