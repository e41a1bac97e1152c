/* Sockets, name resolution, identities and file mappings.
 *
 * The sandbox has no network: socket() is refused with EAFNOSUPPORT, unless
 * the host connects one for the guest (abi_config.socket_open: pg_dump's
 * libpq, whose pglite libc sends and receives through host callbacks);
 * the other socket calls say ENOTSOCK.
 * getaddrinfo/getnameinfo answer numeric addresses (and "localhost"), which
 * is what PostgreSQL needs to load pg_hba.conf. */
#define _GNU_SOURCE
#include "abi/abi_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static u32 notsock(abi_host *h, u32 fd) {
    return abi_fd_get(h, fd) ? NEG(G_ENOTSOCK) : NEG(G_EBADF);
}

u32 Z_envZ___syscall_socket(struct Z_env_instance_t *h, u32 domain, u32 type,
                            u32 proto, u32 a, u32 b, u32 c) {
    (void)domain; (void)type; (void)proto; (void)a; (void)b; (void)c;
    if (!h->socket_open)
        return NEG(G_EAFNOSUPPORT);
    int fd = h->socket_open(h->socket_ctx);
    if (fd < 0)
        return NEG(G_ECONNREFUSED);
    return (u32)abi_fd_socket(h, fd);
}

u32 Z_envZ___syscall_bind(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                          u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

u32 Z_envZ___syscall_connect(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                             u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

u32 Z_envZ___syscall_listen(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                            u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

u32 Z_envZ___syscall_accept4(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                             u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

u32 Z_envZ___syscall_sendto(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                            u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

u32 Z_envZ___syscall_recvfrom(struct Z_env_instance_t *h, u32 fd, u32 a, u32 b,
                              u32 c, u32 d, u32 e) {
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return notsock(h, fd);
}

/* ---- identities: the guest runs as uid/gid 0 of its own world ----------- */

u32 Z_envZ___syscall_getuid32(struct Z_env_instance_t *h) { (void)h; return 0; }
u32 Z_envZ___syscall_geteuid32(struct Z_env_instance_t *h) { (void)h; return 0; }
u32 Z_envZ___syscall_getgid32(struct Z_env_instance_t *h) { (void)h; return 0; }
u32 Z_envZ___syscall_getegid32(struct Z_env_instance_t *h) { (void)h; return 0; }

/* ---- getaddrinfo -------------------------------------------------------- */

static uint32_t alloc_ai(abi_host *h, int family, int type, int proto,
                         const void *addr, uint16_t port_be, uint32_t canon) {
    uint32_t salen = family == G_AF_INET6 ? 28 : 16;
    uint32_t sa = abi_guest_alloc(h, 8, salen);
    uint32_t ai = abi_guest_alloc(h, 8, 32);
    if (!sa || !ai)
        return 0;
    uint8_t *s = abi_gptr(h, sa, salen);
    memset(s, 0, salen);
    uint16_t fam = (uint16_t)family;
    memcpy(s, &fam, 2);
    memcpy(s + 2, &port_be, 2);
    if (family == G_AF_INET6)
        memcpy(s + 8, addr, 16);
    else
        memcpy(s + 4, addr, 4);
    uint8_t *a = abi_gptr(h, ai, 32);
    int32_t v[8] = {0, family, type, proto, (int32_t)salen, (int32_t)sa,
                    (int32_t)canon, 0};
    memcpy(a, v, 32);
    return ai;
}

u32 Z_envZ_getaddrinfo(struct Z_env_instance_t *h, u32 node, u32 service,
                       u32 hint, u32 out) {
    int32_t flags = 0, family = 0, type = 0, proto = 0;
    if (hint) {
        uint8_t *hp = abi_mem_ptr(h->mem, hint, 16);
        if (!hp)
            return (u32)G_EAI_BADFLAGS;
        memcpy(&flags, hp, 4);
        memcpy(&family, hp + 4, 4);
        memcpy(&type, hp + 8, 4);
        memcpy(&proto, hp + 12, 4);
    }
    if (type && !proto)
        proto = type == 2 ? 17 : 6;
    if (!type && proto)
        type = proto == 17 ? 2 : 1;
    if (!proto)
        proto = 6;
    if (!type)
        type = 1;
    if (!node && !service)
        return (u32)G_EAI_NONAME;
    if (flags & ~0x43f)
        return (u32)G_EAI_BADFLAGS;
    if (type != 1 && type != 2)
        return (u32)G_EAI_SOCKTYPE;
    if (family != G_AF_UNSPEC && family != G_AF_INET && family != G_AF_INET6)
        return (u32)G_EAI_FAMILY;
    uint16_t port = 0;
    if (service) {
        char sv[64];
        if (abi_gstr(h, service, sv, sizeof sv) < 0)
            return (u32)G_EAI_SERVICE;
        char *end;
        long p = strtol(sv, &end, 10);
        if (!sv[0] || *end || p < 0 || p > 65535)
            return (u32)((flags & G_AI_NUMERICSERV) ? G_EAI_NONAME : G_EAI_SERVICE);
        port = htons((uint16_t)p);
    }
    uint8_t addr[16];
    int fam;
    uint32_t canon = 0;
    if (!node) {
        fam = family == G_AF_INET6 ? G_AF_INET6 : G_AF_INET;
        memset(addr, 0, sizeof addr);
        if (!(flags & G_AI_PASSIVE)) {
            if (fam == G_AF_INET) {
                uint32_t lo = htonl(INADDR_LOOPBACK);
                memcpy(addr, &lo, 4);
            } else {
                addr[15] = 1;
            }
        }
    } else {
        char name[256];
        if (abi_gstr(h, node, name, sizeof name) < 0)
            return (u32)G_EAI_NONAME;
        canon = node;
        if (inet_pton(AF_INET, name, addr) == 1) {
            if (family == G_AF_INET6) {
                if (!(flags & G_AI_V4MAPPED))
                    return (u32)G_EAI_NONAME;
                memmove(addr + 12, addr, 4);
                memset(addr, 0, 10);
                addr[10] = addr[11] = 0xff;
                fam = G_AF_INET6;
            } else {
                fam = G_AF_INET;
            }
        } else if (inet_pton(AF_INET6, name, addr) == 1) {
            if (family == G_AF_INET)
                return (u32)G_EAI_NONAME;
            fam = G_AF_INET6;
        } else if (!(flags & G_AI_NUMERICHOST) && strcmp(name, "localhost") == 0) {
            if (family == G_AF_INET6) {
                memset(addr, 0, 16);
                addr[15] = 1;
                fam = G_AF_INET6;
            } else {
                uint32_t lo = htonl(INADDR_LOOPBACK);
                memcpy(addr, &lo, 4);
                fam = G_AF_INET;
            }
        } else {
            return (u32)G_EAI_NONAME; /* no DNS in the sandbox */
        }
    }
    uint32_t ai = alloc_ai(h, fam, type, proto, addr, port, canon);
    if (!ai)
        return (u32)G_EAI_MEMORY;
    abi_w32(h, out, ai);
    return 0;
}

u32 Z_envZ_getnameinfo(struct Z_env_instance_t *h, u32 sa, u32 salen, u32 node,
                       u32 nodelen, u32 serv, u32 servlen, u32 flags) {
    uint8_t *s = abi_mem_ptr(h->mem, sa, salen);
    if (!s || salen < 2)
        return (u32)G_EAI_FAMILY;
    uint16_t fam, port;
    memcpy(&fam, s, 2);
    char host[64];
    if (fam == G_AF_INET && salen >= 16) {
        memcpy(&port, s + 2, 2);
        inet_ntop(AF_INET, s + 4, host, sizeof host);
    } else if (fam == G_AF_INET6 && salen >= 28) {
        memcpy(&port, s + 2, 2);
        inet_ntop(AF_INET6, s + 8, host, sizeof host);
    } else {
        return (u32)G_EAI_FAMILY;
    }
    if (node && nodelen) {
        if (flags & G_NI_NAMEREQD)
            return (u32)G_EAI_NONAME; /* no reverse DNS */
        if (strlen(host) + 1 > nodelen)
            return (u32)G_EAI_OVERFLOW;
        abi_put_str(h, node, nodelen, host);
    }
    if (serv && servlen) {
        char p[8];
        snprintf(p, sizeof p, "%u", ntohs(port));
        if (strlen(p) + 1 > servlen)
            return (u32)G_EAI_OVERFLOW;
        abi_put_str(h, serv, servlen, p);
    }
    return 0;
}

/* ---- file mappings ------------------------------------------------------ */

/* ---- shared ranges --------------------------------------------------------
 * Host memory that other instances (or other processes) see too: a
 * MAP_SHARED file mapping, the cluster's main shared-memory segment. A
 * large zero fill there must write zeros: dropping the pages (what the
 * engine does for private memory) would bring back the file's contents. */
#include <pthread.h>
#include <sys/mman.h>

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { uintptr_t a, b; } *shared;
static size_t nshared, shared_cap;
static _Atomic size_t shared_count; /* a lock-free "none" for the fast path */

int abi_shared_add(const void *p, size_t len) {
    pthread_mutex_lock(&shared_lock);
    if (nshared == shared_cap) {
        size_t cap = shared_cap ? shared_cap * 2 : 16;
        void *n = realloc(shared, cap * sizeof *shared);
        if (!n) {
            pthread_mutex_unlock(&shared_lock);
            return -ENOMEM;
        }
        shared = n;
        shared_cap = cap;
    }
    shared[nshared].a = (uintptr_t)p;
    shared[nshared].b = (uintptr_t)p + len;
    nshared++;
    atomic_store(&shared_count, nshared);
    pthread_mutex_unlock(&shared_lock);
    return 0;
}

void abi_shared_del(const void *p) {
    pthread_mutex_lock(&shared_lock);
    for (size_t i = 0; i < nshared; i++)
        if (shared[i].a == (uintptr_t)p) {
            shared[i] = shared[--nshared];
            break;
        }
    atomic_store(&shared_count, nshared);
    pthread_mutex_unlock(&shared_lock);
}

bool abi_shared_overlaps(const void *p, size_t len) {
    if (atomic_load_explicit(&shared_count, memory_order_relaxed) == 0)
        return false;
    uintptr_t a = (uintptr_t)p, b = a + len;
    bool hit = false;
    pthread_mutex_lock(&shared_lock);
    for (size_t i = 0; i < nshared && !hit; i++)
        hit = a < shared[i].b && shared[i].a < b;
    pthread_mutex_unlock(&shared_lock);
    return hit;
}

/* Map host_fd's [off, off+len) shared over guest [addr, addr+len) (len a
 * multiple of the page size, inside the memory), and remember it. */
int abi_host_map_shared(abi_host *h, uint32_t addr, uint32_t len, int host_fd, uint64_t off) {
    uint8_t *d = abi_mem_ptr(h->mem, addr, len);
    if (!d || len == 0)
        return -G_EFAULT;
    if (h->nmaps == h->maps_cap) {
        size_t cap = h->maps_cap ? h->maps_cap * 2 : 8;
        abi_map *n = realloc(h->maps, cap * sizeof *n);
        if (!n)
            return -G_ENOMEM;
        h->maps = n;
        h->maps_cap = cap;
    }
    int fd = fcntl(host_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return -abi_errno(errno);
    if (mmap(d, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off) == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -abi_errno(e);
    }
    if (abi_shared_add(d, len) != 0) {
        mmap(d, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        close(fd);
        return -G_ENOMEM;
    }
    h->maps[h->nmaps++] = (abi_map){addr, len, d, fd, off};
    return 0;
}

/* Undo abi_host_map_shared of the mapping at addr (private zero pages again). */
static bool unmap_shared(abi_host *h, uint32_t addr) {
    for (size_t i = 0; i < h->nmaps; i++) {
        abi_map *m = &h->maps[i];
        if (m->addr != addr)
            continue;
        abi_shared_del(m->host);
        mmap(m->host, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0);
        close(m->host_fd);
        h->maps[i] = h->maps[--h->nmaps];
        return true;
    }
    return false;
}

/* The instance goes (its memory with it): forget its shared ranges. */
void abi_host_forget_maps(abi_host *h) {
    for (size_t i = 0; i < h->nmaps; i++) {
        abi_shared_del(h->maps[i].host);
        close(h->maps[i].host_fd);
    }
    free(h->maps);
    h->maps = NULL;
    h->nmaps = h->maps_cap = 0;
}

/* _mmap_js(len, prot, flags, fd, offset, *allocated, *addr): a file mapping
 * in fresh guest heap, 64 KiB-aligned as Emscripten's. A writable
 * MAP_SHARED mapping of a file is the file's own pages, mapped over that
 * heap block (PostgreSQL's DSM segments with dynamic_shared_memory_type =
 * mmap: one memory for every backend that maps it); any other mapping is a
 * copy, and a private one or a read-only one is never written back. */
u32 Z_envZ__mmap_js(struct Z_env_instance_t *h, u32 len, u32 prot, u32 flags,
                    u32 fd, u64 off, u32 pallocated, u32 paddr) {
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if (f->kind != FD_HOST)
        return NEG(G_ENODEV);
    if (len == 0)
        return NEG(G_EINVAL);
    uint32_t size = (len + 65535u) & ~65535u;
    if (size < len)
        return NEG(G_ENOMEM);
    uint32_t p = abi_guest_alloc(h, 65536, size);
    if (!p)
        return NEG(G_ENOMEM);
    uint8_t *d = abi_gptr(h, p, size);
    struct stat st;
    uint32_t pages = (len + 4095u) & ~4095u;
    if ((flags & G_MAP_SHARED) && (prot & G_PROT_WRITE) && f->writable && !(off & 4095) &&
        fstat(f->host_fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size >= off + len) {
        memset(d + pages, 0, size - pages);
        int r = abi_host_map_shared(h, p, pages, f->host_fd, off);
        if (r == 0) {
            abi_w32(h, pallocated, 1);
            abi_w32(h, paddr, p);
            return 0;
        }
    }
    memset(d, 0, size);
    ssize_t n = pread(f->host_fd, d, len, (off_t)off);
    if (n < 0) {
        int e = errno;
        if (h->ex.free)
            h->ex.free(h->ex.mi, p);
        return NEG(abi_errno(e));
    }
    abi_w32(h, pallocated, 1);
    abi_w32(h, paddr, p);
    return 0;
}

u32 Z_envZ__munmap_js(struct Z_env_instance_t *h, u32 addr, u32 len, u32 prot,
                      u32 flags, u32 fd, u64 off) {
    if (unmap_shared(h, addr))
        return 0; /* the file has its pages already */
    abi_fd *f = abi_fd_get(h, fd);
    if (!f)
        return NEG(G_EBADF);
    if ((prot & G_PROT_WRITE) && !(flags & G_MAP_PRIVATE) && f->kind == FD_HOST &&
        f->writable) {
        uint8_t *d = abi_mem_ptr(h->mem, addr, len);
        if (!d)
            return NEG(G_EFAULT);
        if (pwrite(f->host_fd, d, len, (off_t)off) < 0)
            return NEG(abi_errno(errno));
    }
    return 0;
}
