//! Process hardening at start: the lists in memory hold CPR numbers, so the
//! process never writes a core dump and cannot be attached to by another
//! process of the same user (`PR_SET_DUMPABLE` 0, `RLIMIT_CORE` 0).

/// Disables core dumps and ptrace attach for this process. Failures are
/// ignored: hardening never stops the job.
pub fn process() {
    // SAFETY: plain system calls on this process with constant arguments.
    unsafe {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_core_dumps_and_not_dumpable() {
        super::process();
        // SAFETY: reading this process's own settings.
        let (dumpable, core) = unsafe {
            let mut r = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut r);
            (libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0), r)
        };
        assert_eq!(dumpable, 0);
        assert_eq!((core.rlim_cur, core.rlim_max), (0, 0));
    }
}
