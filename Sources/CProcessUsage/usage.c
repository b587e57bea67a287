#define _GNU_SOURCE
#include "CProcessUsage.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

long sluice_exited_child_maxrss_kb(int pidfd, int pid) {
#ifdef SYS_waitid
    siginfo_t info;
    struct rusage usage;
    memset(&info, 0, sizeof info);
    memset(&usage, 0, sizeof usage);
    int idtype = pidfd >= 0 ? P_PIDFD : P_PID;
    int id = pidfd >= 0 ? pidfd : pid;
    long rc = syscall(SYS_waitid, idtype, id, &info, WEXITED | WNOHANG | WNOWAIT, &usage);
    if (rc != 0 || info.si_pid == 0) return -1; // an error, or not exited yet
    return usage.ru_maxrss;
#else
    (void)pidfd; (void)pid;
    return -1;
#endif
}
