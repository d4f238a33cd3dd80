/*
 * symbols.c: finding the CPython interpreter file another process runs, and where that
 * file's exported symbols lie in it, for attaching to a process that runs another Python
 * version than ours. The file (libpython*.so* or python*) is the one whose .dynsym defines
 * _PyRuntime; it is read from disk, through /proc/PID/root first (containers). Files are
 * untrusted input: every offset and size is checked against the file's size.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "engine.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ELF structs are read with memcpy as the host lays them out: that is the file's layout
 * only on a little-endian host */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "symbols.c reads little-endian ELF files in host byte order"
#endif

/* No table this code reads is near this size in a real interpreter (libpython's .dynsym
 * is about 50 KiB); a bigger claim is a broken file, not a reason to allocate it */
#define TABLE_LIMIT ((uint64_t)64 << 20)

#define DELETED_SUFFIX " (deleted)"

/* One line of /proc/PID/maps; path points into the line (empty for anonymous memory). */
typedef struct {
    uintptr_t start, end, offset;
    unsigned long long inode;
    const char *path;
} mapping;

/* An interpreter file opened for reading. */
typedef struct {
    int fd;
    uint64_t size;
} elf_file;

/* What of the loadable segments the load bias and the symbol checks need. */
typedef struct {
    uint64_t lowest_vaddr, lowest_offset; /* of the PT_LOAD with the lowest p_vaddr */
    uint64_t end_vaddr;                   /* past the highest byte of any PT_LOAD */
} load_extent;

/* ------------------------------------------------------------ /proc/PID/maps */

/* The whole of a /proc file, NUL-terminated; -1 with errno from the failing open or read. */
static int read_proc_file(const char *name, char **out, size_t *len)
{
    size_t cap = 0, used = 0;
    char *buf = NULL;
    int rc = -1, error = 0;
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        if (cap - used < 2) {
            /* the maps of a process with a big address space are megabytes: grow, to a bound */
            size_t bigger_cap = cap ? cap * 2 : (size_t)1 << 16;
            char *bigger = bigger_cap <= ((size_t)1 << 30) ? realloc(buf, bigger_cap) : NULL;
            if (!bigger) {
                error = ENOMEM;
                goto done;
            }
            buf = bigger;
            cap = bigger_cap;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = errno;
            goto done;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    close(fd);
    if (rc != 0)
        errno = error;
    return rc;
}

/* Parses one line: `start-end perms offset dev inode path`. */
static bool parse_mapping(const char *line, mapping *m)
{
    int path_at = 0;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %" SCNxPTR " %*x:%*x %llu %n", &m->start, &m->end, &m->offset,
               &m->inode, &path_at) < 4)
        return false;
    m->path = path_at > 0 ? line + path_at : "";
    return true;
}

/* Whether the file's name (the part after its last '/') starts with prefix. */
static bool named_like(const char *path, const char *prefix)
{
    const char *slash = strrchr(path, '/');
    return slash && strncmp(slash + 1, prefix, strlen(prefix)) == 0;
}

/* The path without the " (deleted)" the kernel appends to a file unlinked since it was
 * mapped; false when it has none (or it does not fit). */
static bool strip_deleted(const char *path, char *out, size_t outlen)
{
    size_t len = strlen(path), suffix = strlen(DELETED_SUFFIX);
    if (len <= suffix || strcmp(path + len - suffix, DELETED_SUFFIX) != 0 || len - suffix >= outlen)
        return false;
    memcpy(out, path, len - suffix);
    out[len - suffix] = '\0';
    return true;
}

/* --------------------------------------------------------------- opening */

/* Opens name as a regular file; -1 with errno. O_NONBLOCK: a FIFO planted at the path
 * in a container must not hang us; the S_ISREG check then refuses it. */
static int open_regular(const char *name, struct stat *st)
{
    int fd = open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    int error = 0;
    if (fstat(fd, st) != 0)
        error = errno;
    else if (!S_ISREG(st->st_mode))
        error = EINVAL;
    if (error) {
        close(fd);
        errno = error;
        return -1;
    }
    return fd;
}

/* Why open_regular failed, in words. */
static const char *open_error(int error)
{
    return error == EINVAL ? "it is not a regular file" : strerror(error);
}

/* The i-th place open_mapped_file looks for a mapped file; false: none (or too long). */
static bool place_to_look(int i, pid_t pid, const mapping *m, const char *stripped, char *out, size_t outlen)
{
    int len = -1;
    if (i == 0)
        len = snprintf(out, outlen, "/proc/%d/root%s", (int)pid, m->path);
    else if (i == 1)
        len = snprintf(out, outlen, "%s", m->path);
    else if (i == 2 && stripped)
        len = snprintf(out, outlen, "/proc/%d/map_files/%" PRIxPTR "-%" PRIxPTR, (int)pid, m->start, m->end);
    else if (i == 3 && stripped)
        len = snprintf(out, outlen, "/proc/%d/root%s", (int)pid, stripped);
    else if (i == 4 && stripped)
        len = snprintf(out, outlen, "%s", stripped);
    return len >= 0 && (size_t)len < outlen;
}

/* Opens the file the mapping maps. The path is the target's view, so /proc/PID/root
 * first (another mount namespace), then the same path in ours (a target chrooted in our
 * namespace), taken only if it is the same inode: a host's file of the same name would
 * give wrong addresses. (The first is not checked so: across overlayfs the inode in maps
 * can be the layer's, not the one stat sees.) A file deleted since it was mapped is
 * reached through /proc/PID/map_files (root only), or by its old name if that still
 * names the same inode: after an upgrade it names the new file. */
static int open_mapped_file(pid_t pid, const mapping *m, elf_file *f, char *why, size_t n)
{
    char stripped[PATH_MAX], place[PATH_MAX + 64];
    bool deleted = strip_deleted(m->path, stripped, sizeof stripped);
    int errors[5] = {ENAMETOOLONG, ENAMETOOLONG, ENAMETOOLONG, ENAMETOOLONG, ENAMETOOLONG};
    bool elsewhere = false; /* a name led to another file */
    for (int i = 0; i < 5; i++) {
        if (!place_to_look(i, pid, m, deleted ? stripped : NULL, place, sizeof place))
            continue;
        struct stat st;
        int fd = open_regular(place, &st);
        if (fd < 0) {
            errors[i] = errno;
            continue;
        }
        if ((i == 1 || i >= 3) && (unsigned long long)st.st_ino != m->inode) {
            elsewhere = true;
            close(fd);
            continue;
        }
        f->fd = fd;
        f->size = (uint64_t)st.st_size;
        return 0;
    }
    bool refused = errors[2] == EPERM || errors[2] == EACCES;
    if (deleted)
        snprintf(why, n, "it was deleted since it was mapped%s, and /proc/%d/map_files cannot open it: %s%s",
                 elsewhere ? " (its name now leads to another file)" : "", (int)pid, open_error(errors[2]),
                 refused ? " (only root can)" : "");
    else if (elsewhere)
        snprintf(why, n, "cannot open it through /proc/%d/root (%s), and its name here leads to another file",
                 (int)pid, open_error(errors[0]));
    else
        snprintf(why, n, "cannot open it: %s", open_error(errors[0]));
    return -1;
}

/* ---------------------------------------------------------------- reading */

static bool in_file(const elf_file *f, uint64_t offset, uint64_t len)
{
    return offset <= f->size && len <= f->size - offset;
}

/* Reads exactly len bytes at offset, which the caller has checked lie in the file. */
static int read_at(const elf_file *f, uint64_t offset, void *dst, size_t len, char *why, size_t n)
{
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(f->fd, (char *)dst + done, len - done, (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(why, n, "reading %zu bytes at offset %" PRIu64 ": %s", len, offset,
                     got < 0 ? strerror(errno) : "the file is shorter than it was (it changed while read)");
            return -1;
        }
        done += (size_t)got;
    }
    return 0;
}

/* Allocates and reads `count` entries of `entsize` bytes at offset: `what` names the
 * table in a message when it does not lie in the file. */
static int read_table(const elf_file *f, uint64_t offset, uint64_t count, uint64_t entsize, const char *what,
                      void **out, char *why, size_t n)
{
    if (entsize != 0 && count > TABLE_LIMIT / entsize) {
        snprintf(why, n, "its %s claims %" PRIu64 " entries of %" PRIu64 " bytes, more than a real one holds", what,
                 count, entsize);
        return -1;
    }
    uint64_t len = count * entsize;
    if (!in_file(f, offset, len)) {
        snprintf(why, n, "its %s (%" PRIu64 " bytes at offset %" PRIu64 ") lies past its end (%" PRIu64 " bytes)",
                 what, len, offset, f->size);
        return -1;
    }
    void *buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        snprintf(why, n, "no memory for its %s (%" PRIu64 " bytes)", what, len);
        return -1;
    }
    if (read_at(f, offset, buf, (size_t)len, why, n) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* ------------------------------------------------------------------- ELF */

/* Reads the ELF header and accepts only what this code parses: ELF64, little-endian,
 * x86-64 or aarch64, an executable or a shared object. */
static int read_header(const elf_file *f, Elf64_Ehdr *eh, char *why, size_t n)
{
    if (!in_file(f, 0, sizeof *eh)) {
        snprintf(why, n, "it is not an ELF file (%" PRIu64 " bytes)", f->size);
        return -1;
    }
    if (read_at(f, 0, eh, sizeof *eh, why, n) != 0)
        return -1;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(why, n, "it is not an ELF file");
        return -1;
    }
    unsigned cls = eh->e_ident[EI_CLASS], data = eh->e_ident[EI_DATA];
    if (cls != ELFCLASS64 || data != ELFDATA2LSB) {
        snprintf(why, n, "it is %s, %s; only ELF64 little-endian files (x86-64, aarch64) are read",
                 cls == ELFCLASS32 ? "ELF32" : cls == ELFCLASS64 ? "ELF64" : "of an unknown ELF class",
                 data == ELFDATA2MSB ? "big-endian" : data == ELFDATA2LSB ? "little-endian" : "of unknown byte order");
        return -1;
    }
    if (eh->e_machine != EM_X86_64 && eh->e_machine != EM_AARCH64) {
        snprintf(why, n, "it is built for machine %u; only x86-64 and aarch64 are read", (unsigned)eh->e_machine);
        return -1;
    }
    if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) {
        snprintf(why, n, "it is neither an executable nor a shared object (ELF type %u)", (unsigned)eh->e_type);
        return -1;
    }
    return 0;
}

/* Where the loadable segments lie: the lowest gives the load bias, and every symbol
 * resolved must lie within them. */
static int read_load_extent(const elf_file *f, const Elf64_Ehdr *eh, load_extent *out, char *why, size_t n)
{
    unsigned char *table = NULL;
    bool found = false;
    int rc = -1;
    *out = (load_extent){0, 0, 0};
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum == PN_XNUM) {
        snprintf(why, n, "its program headers are missing or malformed (%u entries of %u bytes)",
                 (unsigned)eh->e_phnum, (unsigned)eh->e_phentsize);
        goto done;
    }
    if (read_table(f, eh->e_phoff, eh->e_phnum, sizeof(Elf64_Phdr), "program header table", (void **)&table, why,
                   n) != 0)
        goto done;
    for (size_t i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, table + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_memsz > UINT64_MAX - ph.p_vaddr) {
            snprintf(why, n, "a loadable segment wraps around the address space");
            goto done;
        }
        if (!found || ph.p_vaddr < out->lowest_vaddr) {
            out->lowest_vaddr = ph.p_vaddr;
            out->lowest_offset = ph.p_offset;
        }
        if (!found || ph.p_vaddr + ph.p_memsz > out->end_vaddr)
            out->end_vaddr = ph.p_vaddr + ph.p_memsz;
        found = true;
    }
    if (!found) {
        snprintf(why, n, "it has no loadable segment");
        goto done;
    }
    rc = 0;
done:
    free(table);
    return rc;
}

/* Finds .dynsym and the string table its sh_link names. */
static int find_dynsym(const elf_file *f, const Elf64_Ehdr *eh, Elf64_Shdr *dynsym, Elf64_Shdr *dynstr, char *why,
                       size_t n)
{
    unsigned char *table = NULL;
    int rc = -1;
    if (eh->e_shoff == 0) {
        snprintf(why, n, "it has no section headers");
        goto done;
    }
    if (eh->e_shentsize != sizeof(Elf64_Shdr)) {
        snprintf(why, n, "its section headers are %u bytes each, not %zu", (unsigned)eh->e_shentsize,
                 sizeof(Elf64_Shdr));
        goto done;
    }
    uint64_t count = eh->e_shnum;
    if (count == 0) {
        /* more than SHN_LORESERVE sections: the count is kept in section 0's sh_size */
        Elf64_Shdr first;
        if (!in_file(f, eh->e_shoff, sizeof first)) {
            snprintf(why, n, "its section headers lie past its end");
            goto done;
        }
        if (read_at(f, eh->e_shoff, &first, sizeof first, why, n) != 0)
            goto done;
        count = first.sh_size;
    }
    if (read_table(f, eh->e_shoff, count, sizeof(Elf64_Shdr), "section header table", (void **)&table, why, n) != 0)
        goto done;
    bool found = false;
    for (uint64_t i = 0; i < count && !found; i++) {
        memcpy(dynsym, table + i * sizeof *dynsym, sizeof *dynsym);
        found = dynsym->sh_type == SHT_DYNSYM;
    }
    if (!found) {
        snprintf(why, n, "it has no dynamic symbol table (.dynsym)");
        goto done;
    }
    if (dynsym->sh_link == 0 || dynsym->sh_link >= count) {
        snprintf(why, n, "its .dynsym links to section %u, which does not exist", (unsigned)dynsym->sh_link);
        goto done;
    }
    memcpy(dynstr, table + (size_t)dynsym->sh_link * sizeof *dynstr, sizeof *dynstr);
    if (dynstr->sh_type != SHT_STRTAB) {
        snprintf(why, n, "its .dynsym links to section %u, which is not a string table", (unsigned)dynsym->sh_link);
        goto done;
    }
    if (dynsym->sh_entsize != sizeof(Elf64_Sym)) {
        snprintf(why, n, "its .dynsym entries are %" PRIu64 " bytes, not %zu", (uint64_t)dynsym->sh_entsize,
                 sizeof(Elf64_Sym));
        goto done;
    }
    rc = 0;
done:
    free(table);
    return rc;
}

/* Sets each symbol's addr to its st_value in the file (0: not defined here) and *runtime
 * to _PyRuntime's. Only a symbol defined in a section counts: an undefined one is
 * imported from another file, an absolute one is no place in the file, and a
 * thread-local one's value is an offset in every thread's own block. */
static int lookup_symbols(const elf_file *f, const Elf64_Shdr *dynsym, const Elf64_Shdr *dynstr, pi_symbol *syms,
                          size_t count, uint64_t *runtime, char *why, size_t n)
{
    unsigned char *symbols = NULL;
    char *strings = NULL;
    int rc = -1;
    uint64_t nsyms = dynsym->sh_size / sizeof(Elf64_Sym);
    *runtime = 0;
    for (size_t j = 0; j < count; j++)
        syms[j].addr = 0;
    if (read_table(f, dynsym->sh_offset, nsyms, sizeof(Elf64_Sym), ".dynsym", (void **)&symbols, why, n) != 0 ||
        read_table(f, dynstr->sh_offset, dynstr->sh_size, 1, ".dynstr", (void **)&strings, why, n) != 0)
        goto done;
    /* a string table ends in a NUL, so every name that starts inside it ends inside it */
    if (dynstr->sh_size == 0 || strings[dynstr->sh_size - 1] != '\0') {
        snprintf(why, n, "its .dynstr does not end in a NUL");
        goto done;
    }
    for (uint64_t i = 1; i < nsyms; i++) { /* entry 0 is the null symbol */
        Elf64_Sym sym;
        memcpy(&sym, symbols + i * sizeof sym, sizeof sym);
        if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS || ELF64_ST_TYPE(sym.st_info) == STT_TLS ||
            sym.st_value == 0 || sym.st_name >= dynstr->sh_size)
            continue;
        const char *name = strings + sym.st_name;
        /* with symbol versions a name can appear more than once: the first one wins */
        if (*runtime == 0 && strcmp(name, "_PyRuntime") == 0)
            *runtime = sym.st_value;
        for (size_t j = 0; j < count; j++)
            if (syms[j].addr == 0 && syms[j].name && strcmp(name, syms[j].name) == 0)
                syms[j].addr = (uintptr_t)sym.st_value;
    }
    rc = 0;
done:
    free(symbols);
    free(strings);
    return rc;
}

/* Moves each symbol found from the file's addresses to the process's. The mapping at
 * file offset 0 holds the lowest segment's page: the bias is its start minus that
 * page's link-time address. */
static int relocate(const mapping *m, const Elf64_Ehdr *eh, const load_extent *ext, pi_symbol *syms, size_t count,
                    char *why, size_t n)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t base = ext->lowest_vaddr & ~(page - 1);
    if ((ext->lowest_offset & ~(page - 1)) != 0) {
        snprintf(why, n, "its lowest loadable segment does not start at the start of the file (offset %" PRIu64 ")",
                 ext->lowest_offset);
        return -1;
    }
    /* an executable that is not position-independent loads where it was linked: if not,
     * the file read is not the one the process mapped */
    if (eh->e_type == ET_EXEC && m->start != base) {
        snprintf(why, n, "it is linked to load at 0x%" PRIx64 " but is mapped at 0x%" PRIxPTR ": not the same file",
                 base, m->start);
        return -1;
    }
    for (size_t j = 0; j < count; j++) {
        uint64_t value = syms[j].addr;
        if (value == 0)
            continue;
        if (value < ext->lowest_vaddr || value >= ext->end_vaddr) {
            snprintf(why, n, "its symbol %s (0x%" PRIx64 ") lies outside its loadable segments", syms[j].name, value);
            return -1;
        }
        if (value - base > UINTPTR_MAX - m->start) {
            snprintf(why, n, "its symbol %s would lie past the end of the address space", syms[j].name);
            return -1;
        }
        syms[j].addr = m->start + (uintptr_t)(value - base);
    }
    return 0;
}

/* Resolves syms in the file a mapping at offset 0 maps. 1: it defines _PyRuntime and
 * syms are resolved; 0: it does not (not the interpreter); -1: it cannot be read (why). */
static int resolve_in_file(pid_t pid, const mapping *m, pi_symbol *syms, size_t count, char *why, size_t n)
{
    elf_file f = {.fd = -1, .size = 0};
    Elf64_Ehdr eh;
    load_extent ext;
    Elf64_Shdr dynsym, dynstr;
    uint64_t runtime;
    int rc = -1;
    if (open_mapped_file(pid, m, &f, why, n) != 0 || read_header(&f, &eh, why, n) != 0 ||
        read_load_extent(&f, &eh, &ext, why, n) != 0 || find_dynsym(&f, &eh, &dynsym, &dynstr, why, n) != 0 ||
        lookup_symbols(&f, &dynsym, &dynstr, syms, count, &runtime, why, n) != 0)
        goto done;
    if (runtime == 0) {
        rc = 0;
        goto done;
    }
    rc = relocate(m, &eh, &ext, syms, count, why, n) == 0 ? 1 : -1;
done:
    if (f.fd >= 0)
        close(f.fd);
    return rc;
}

/* What a scan of the maps met short of the interpreter: the message when none is found. */
typedef struct {
    char why[1024];  /* the first file named like an interpreter that cannot be read */
    bool no_runtime; /* one that defines no _PyRuntime: Python before 3.7, or no Python */
} scan_misses;

/* Tries each file named like prefix that maps offset 0 (the first mapping of a loaded
 * file). 1: found (its path copied); 0: none, what was met instead added to misses.
 * maps is split into NUL-terminated lines. */
static int scan_maps(pid_t pid, const char *maps, size_t len, const char *prefix, pi_symbol *syms, size_t count,
                     char *path, size_t pathlen, scan_misses *misses)
{
    for (const char *line = maps; line < maps + len; line += strlen(line) + 1) {
        mapping m;
        if (!parse_mapping(line, &m) || m.offset != 0 || m.inode == 0 || !named_like(m.path, prefix))
            continue;
        char reason[600] = "";
        int found = resolve_in_file(pid, &m, syms, count, reason, sizeof reason);
        if (found == 1) {
            if (pathlen)
                snprintf(path, pathlen, "%s", m.path);
            return 1;
        }
        misses->no_runtime = misses->no_runtime || found == 0;
        if (found < 0 && misses->why[0] == '\0')
            snprintf(misses->why, sizeof misses->why, "cannot read %s: %s", m.path, reason);
    }
    return 0;
}

/* The line for a process that runs no interpreter file we found; one that defines no
 * _PyRuntime is most likely Python 2 or 3.0-3.6, which the message names. */
static void explain_not_python(pid_t pid, bool no_runtime, char *err, size_t errlen)
{
    char link[64], exe[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t len = readlink(link, exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    snprintf(err, errlen, "process %d does not run Python%s (it runs %s)", (int)pid, no_runtime ? " 3.7 or later" : "",
             len > 0 ? exe : "?");
}

int pi_find_interpreter_symbols(pid_t pid, pi_symbol *syms, size_t count, char *path, size_t pathlen, char *err,
                                size_t errlen)
{
    char name[64];
    scan_misses misses = {"", false};
    char *maps = NULL;
    size_t len = 0;
    int rc = -1;
    if (errlen)
        err[0] = '\0';
    if (pathlen)
        path[0] = '\0';
    for (size_t j = 0; j < count; j++)
        syms[j].addr = 0;
    snprintf(name, sizeof name, "/proc/%d/maps", (int)pid);
    if (read_proc_file(name, &maps, &len) != 0) {
        int error = errno;
        if (error == EACCES || error == EPERM)
            return -2; /* errno is still the refusal */
        if (error == ENOENT || error == ESRCH)
            snprintf(err, errlen, "no process %d is running", (int)pid);
        else
            snprintf(err, errlen, "cannot read %s: %s", name, strerror(error));
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (maps[i] == '\n')
            maps[i] = '\0';
    /* libpython first: an executable linked to it only imports _PyRuntime */
    if (scan_maps(pid, maps, len, "libpython", syms, count, path, pathlen, &misses) ||
        scan_maps(pid, maps, len, "python", syms, count, path, pathlen, &misses)) {
        rc = 0;
        goto done;
    }
    for (size_t j = 0; j < count; j++)
        syms[j].addr = 0;
    if (misses.why[0])
        snprintf(err, errlen, "%s", misses.why);
    else
        explain_not_python(pid, misses.no_runtime, err, errlen);
done:
    free(maps);
    return rc;
}
