/* Loaded ahead of libfaketime in the test clusters' nodes (kvstore.localcluster, clocks=True): only the
   real-time clock reaches libfaketime; the monotonic clock, condition-variable timeouts and epoll waits go
   straight to libc and the kernel.

   Why: libfaketime wraps them all. Its pthread_cond_timedwait wrapper returns early under
   FAKETIME_DONT_FAKE_MONOTONIC, so a Python thread waiting for the interpreter lock spins on it (measured:
   800,000 monotonic clock reads per node for 300 writes), and every other wrapper takes a lock and two
   signal-mask calls. The harness fakes the wall clock only: nothing here changes what a node reads from it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void *libc(void) {
    static void *handle;
    if (!handle) handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    return handle;
}

int clock_gettime(clockid_t clock, struct timespec *now) {
    static int (*faked)(clockid_t, struct timespec *), (*real)(clockid_t, struct timespec *);
    if (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE) {
        if (!faked) faked = dlsym(RTLD_NEXT, "clock_gettime");
        return faked(clock, now);
    }
    if (!real) real = dlsym(libc(), "clock_gettime");
    return real(clock, now);
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline) {
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    if (!real) real = dlvsym(libc(), "pthread_cond_timedwait", "GLIBC_2.3.2");
    return real(cond, mutex, deadline);
}

int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *sigmask) {
    return syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, sigmask, _NSIG / 8);
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    return syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, NULL, _NSIG / 8);
}
