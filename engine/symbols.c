/*
 * symbols.c: finding the CPython interpreter file another process runs, and where that
 * file's exported symbols lie in it, for attaching to a process that runs another Python
 * version than ours. The file is the one whose .dynsym defines _PyRuntime: the process's
 * executable, a libpython*.so*, or a python*. It is read from disk, through /proc/PID/root
 * (or /proc/PID/map_files once deleted). Files are untrusted input: every offset and size is
 * checked against the file's size.
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
#include <sys/sysmacros.h>
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

bool pi_next_mapping(FILE *maps, char **line, size_t *cap, pi_mapping *m)
{
    while (getline(line, cap, maps) > 0) {
        int path_at = 0;
        (*line)[strcspn(*line, "\n")] = '\0';
        /* start-end perms offset major:minor inode path */
        if (sscanf(*line, "%" SCNxPTR "-%" SCNxPTR " %*s %" SCNxPTR " %x:%x %llu %n", &m->start, &m->end,
                   &m->offset, &m->dev_major, &m->dev_minor, &m->inode, &path_at) == 6) {
            m->path = path_at > 0 ? *line + path_at : "";
            return true;
        }
    }
    return false;
}

/* --------------------------------------------------------------- reading */

/* Opens the file a mapping maps, through /proc/PID/root: maps names a file of another mount
 * namespace from that namespace's root (though one of a process merely chrooted in ours
 * from our root: such a process is not read). Where that is refused, reading the process's
 * memory would be too. A file deleted since it was mapped (an upgrade renamed another over
 * it) is opened through /proc/PID/map_files, which only root may, and must still be the
 * device and inode mapped there. (Through /proc/PID/root the inode is not compared: over
 * overlayfs, maps can show a layer's.) O_NONBLOCK: a FIFO planted at the path must not
 * hang us. */
static int open_mapped_file(pid_t pid, const pi_mapping *m, elf_file *f, char *why, size_t n)
{
    char place[PATH_MAX + 64];
    size_t len = strlen(m->path), suffix = strlen(DELETED_SUFFIX);
    bool deleted = len > suffix && strcmp(m->path + len - suffix, DELETED_SUFFIX) == 0, refused = false;
    int wrote = deleted ? snprintf(place, sizeof place, "/proc/%d/map_files/%" PRIxPTR "-%" PRIxPTR, (int)pid,
                                   m->start, m->end)
                        : snprintf(place, sizeof place, "/proc/%d/root%s", (int)pid, m->path);
    const char *problem = NULL;
    struct stat st;
    int fd = -1;
    /* a process chrooted in our mount namespace names its files from our root: the path
     * as we see it, when it is the very file mapped (same device and inode) */
    bool by_our_path = false;
    if (wrote < 0 || (size_t)wrote >= sizeof place) {
        problem = strerror(ENAMETOOLONG);
    } else {
        fd = open(place, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && !deleted && errno == ENOENT) {
            by_our_path = true;
            fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        }
        if (fd < 0 || fstat(fd, &st) != 0) {
            refused = errno == EPERM || errno == EACCES;
            problem = strerror(errno);
        } else if (!S_ISREG(st.st_mode)) {
            problem = "it is not a regular file";
        } else if ((deleted || by_our_path) && ((unsigned long long)st.st_ino != m->inode ||
                                                major(st.st_dev) != m->dev_major || minor(st.st_dev) != m->dev_minor)) {
            problem = deleted ? "another file is mapped there now" : "the file at its path is not the one mapped";
        }
    }
    if (!problem) {
        f->fd = fd;
        f->size = (uint64_t)st.st_size;
        return 0;
    }
    if (fd >= 0)
        close(fd);
    if (deleted)
        snprintf(why, n, "it was deleted since it was mapped, and /proc/%d/map_files cannot open it: %s%s", (int)pid,
                 problem, refused ? " (only root can)" : "");
    else
        snprintf(why, n, "cannot open it through /proc/%d/root: %s", (int)pid, problem);
    return -1;
}

/* Reads exactly len bytes at offset; `what` names them in the message when they do not
 * lie in the file. */
static int read_at(const elf_file *f, uint64_t offset, void *dst, uint64_t len, const char *what, char *why,
                   size_t n)
{
    if (offset > f->size || len > f->size - offset) {
        snprintf(why, n, "its %s (%" PRIu64 " bytes at offset %" PRIu64 ") lies past its end (%" PRIu64 " bytes)",
                 what, len, offset, f->size);
        return -1;
    }
    uint64_t done = 0;
    while (done < len) {
        ssize_t got = pread(f->fd, (char *)dst + done, (size_t)(len - done), (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(why, n, "reading its %s: %s", what,
                     got < 0 ? strerror(errno) : "the file is shorter than it was (it changed while read)");
            return -1;
        }
        done += (uint64_t)got;
    }
    return 0;
}

/* Allocates and reads `count` entries of `entsize` (not 0) bytes at offset, the table
 * `what` names in a message. */
static int read_table(const elf_file *f, uint64_t offset, uint64_t count, uint64_t entsize, const char *what,
                      void **out, char *why, size_t n)
{
    if (count > TABLE_LIMIT / entsize) {
        snprintf(why, n, "its %s claims %" PRIu64 " entries of %" PRIu64 " bytes, more than a real one holds", what,
                 count, entsize);
        return -1;
    }
    uint64_t len = count * entsize;
    void *buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        snprintf(why, n, "no memory for its %s (%" PRIu64 " bytes)", what, len);
        return -1;
    }
    if (read_at(f, offset, buf, len, what, why, n) != 0) {
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
    if (read_at(f, 0, eh, sizeof *eh, "ELF header", why, n) != 0)
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
        if (read_at(f, eh->e_shoff, &first, sizeof first, "section header table", why, n) != 0)
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

/* Sets each symbol's addr to its st_value in the file (0: not defined here). 1: the file
 * defines _PyRuntime; 0: it does not; -1: it cannot be read (why). Only a symbol defined
 * in a section counts: an undefined one is imported from another file, an absolute one
 * is no place in the file, and a thread-local one's value is an offset in every thread's
 * own block. */
static int lookup_symbols(const elf_file *f, const Elf64_Shdr *dynsym, const Elf64_Shdr *dynstr, pi_symbol *syms,
                          size_t count, char *why, size_t n)
{
    unsigned char *symbols = NULL;
    char *strings = NULL;
    int rc = -1;
    uint64_t nsyms = dynsym->sh_size / sizeof(Elf64_Sym);
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
    rc = 0;
    for (uint64_t i = 1; i < nsyms; i++) { /* entry 0 is the null symbol */
        Elf64_Sym sym;
        memcpy(&sym, symbols + i * sizeof sym, sizeof sym);
        if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS || ELF64_ST_TYPE(sym.st_info) == STT_TLS ||
            sym.st_value == 0 || sym.st_name >= dynstr->sh_size)
            continue;
        const char *name = strings + sym.st_name;
        if (strcmp(name, "_PyRuntime") == 0)
            rc = 1;
        /* with symbol versions a name can appear more than once: the first one wins */
        for (size_t j = 0; j < count; j++)
            if (syms[j].addr == 0 && syms[j].name && strcmp(name, syms[j].name) == 0)
                syms[j].addr = (uintptr_t)sym.st_value;
    }
done:
    free(symbols);
    free(strings);
    return rc;
}

/* Moves each symbol found from the file's addresses to the process's. The mapping at
 * file offset 0 holds the lowest segment's page: the bias is its start minus that
 * page's link-time address. */
static int relocate(const pi_mapping *m, const Elf64_Ehdr *eh, const load_extent *ext, pi_symbol *syms,
                    size_t count, char *why, size_t n)
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
static int resolve_in_file(pid_t pid, const pi_mapping *m, pi_symbol *syms, size_t count, char *why, size_t n)
{
    elf_file f = {.fd = -1, .size = 0};
    Elf64_Ehdr eh;
    load_extent ext;
    Elf64_Shdr dynsym, dynstr;
    int rc = -1;
    if (open_mapped_file(pid, m, &f, why, n) == 0 && read_header(&f, &eh, why, n) == 0 &&
        read_load_extent(&f, &eh, &ext, why, n) == 0 && find_dynsym(&f, &eh, &dynsym, &dynstr, why, n) == 0)
        rc = lookup_symbols(&f, &dynsym, &dynstr, syms, count, why, n);
    if (rc == 1 && relocate(m, &eh, &ext, syms, count, why, n) != 0)
        rc = -1;
    if (f.fd >= 0)
        close(f.fd);
    return rc;
}

/* ---------------------------------------------------------------- the scan */

/* What a scan of the maps met short of the interpreter: the message when none is found. */
typedef struct {
    char why[1024];  /* the first file named like an interpreter that cannot be read */
    bool no_runtime; /* one that defines no _PyRuntime: Python before 3.7, or no Python */
} scan_misses;

/* Whether a mapped file's path is `name` (a whole path, from '/') or, else, its file
 * name (after its last '/') starts with `name`. */
static bool named(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    return name[0] == '/' ? strcmp(path, name) == 0 : slash && strncmp(slash + 1, name, strlen(name)) == 0;
}

/* Tries each file so named that maps offset 0 (the first mapping of a loaded file), from
 * the start of maps. 1: found (its path copied); 0: none, what was met instead added to
 * misses when given. */
static int scan_maps(pid_t pid, FILE *maps, const char *name, pi_symbol *syms, size_t count, char *path,
                     size_t pathlen, scan_misses *misses)
{
    char *line = NULL;
    size_t cap = 0;
    pi_mapping m;
    int found = 0;
    rewind(maps);
    while (found != 1 && pi_next_mapping(maps, &line, &cap, &m)) {
        if (m.offset != 0 || m.inode == 0 || !named(m.path, name))
            continue;
        char reason[600] = "";
        found = resolve_in_file(pid, &m, syms, count, reason, sizeof reason);
        if (found == 1)
            snprintf(path, pathlen, "%s", m.path);
        else if (misses && found == 0)
            misses->no_runtime = true;
        else if (misses && misses->why[0] == '\0')
            snprintf(misses->why, sizeof misses->why, "cannot read %s: %s", m.path, reason);
    }
    free(line);
    return found == 1;
}

int pi_find_interpreter_symbols(pid_t pid, FILE *maps, pi_symbol *syms, size_t count, char *path, size_t pathlen,
                                char *err, size_t errlen)
{
    char link[64], exe[PATH_MAX];
    scan_misses misses = {"", false};
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t len = readlink(link, exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    /* its executable when that defines _PyRuntime (a static python, which may also load
     * some other version's libpython); else libpython first: pyenv's python executables,
     * linked to it, only import _PyRuntime. The executable's misses are not kept: one
     * named python* is tried again last, and any other is no interpreter. */
    if ((exe[0] == '/' && scan_maps(pid, maps, exe, syms, count, path, pathlen, NULL)) ||
        scan_maps(pid, maps, "libpython", syms, count, path, pathlen, &misses) ||
        scan_maps(pid, maps, "python", syms, count, path, pathlen, &misses))
        return 0;
    for (size_t j = 0; j < count; j++)
        syms[j].addr = 0;
    /* one that defines no _PyRuntime is most likely Python 2 or 3.0-3.6 */
    if (misses.why[0])
        snprintf(err, errlen, "%s", misses.why);
    else
        snprintf(err, errlen, "process %d does not run Python%s (it runs %s)", (int)pid,
                 misses.no_runtime ? " 3.7 or later" : "", exe[0] ? exe : "?");
    return -1;
}
