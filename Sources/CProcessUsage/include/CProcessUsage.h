#ifndef CPROCESS_USAGE_H
#define CPROCESS_USAGE_H

/// The peak resident memory, in kilobytes, of a child process that has exited and is not reaped yet
/// (with its own reaped children), from the kernel's accounting: `waitid(WEXITED | WNOHANG | WNOWAIT)`
/// with the rusage the system call takes and glibc's `waitid` does not pass. The child stays a zombie,
/// for its owner to reap. `pidfd` names it when it is >= 0 (Linux 5.4+), else `pid`. Returns -1 when
/// the child has not exited, was reaped already, or is not this process's child.
long sluice_exited_child_maxrss_kb(int pidfd, int pid);

#endif
