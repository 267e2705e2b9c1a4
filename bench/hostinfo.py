"""Host facts every bench table is printed with (imported by the bench scripts next to it).

host_notes(): the host's transparent-huge-page setting and whether it maps a shared zero page
(both change what restoring a template costs: without a zero page, reading untouched guest RAM
allocates it). Measured, not guessed: read one byte of every page of 64 MiB of fresh anonymous
memory and see whether RSS grows.
"""
import mmap


def host_notes():
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    cmdline = open("/proc/cmdline").read()
    # Read one byte of every page of fresh anonymous memory: with a shared zero page RSS
    # does not move; without one, every read allocates a page.
    n = 64 << 20
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_NOHUGEPAGE)
    except (AttributeError, OSError):
        pass
    before = rss_anon_self()
    for off in range(0, n, 4096):
        m[off]
    grew = rss_anon_self() - before
    m.close()
    zero = ("shared zero page: yes (reading 64 MiB of untouched memory grew RSS by %.0f MiB)" % grew
            if grew < 16 else
            "shared zero page: NO (reading 64 MiB of untouched memory grew RSS by %.0f MiB)" % grew)
    if "pvm_no_zero_page" in cmdline:
        zero += "; kernel command line has pvm_no_zero_page"
    return f"THP: {thp}; {zero}"


def rss_anon_self():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


