//! Kernel programs stamp events with CLOCK_MONOTONIC (`bpf_ktime_get_ns`); reports speak wall
//! clock time. One reading of both clocks converts between them.
use std::time::{Duration, SystemTime};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    mono_ns: u64,
    wall: SystemTime,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Clock {
    pub fn now() -> Clock {
        Clock { mono_ns: monotonic_ns(), wall: SystemTime::now() }
    }

    /// A clock that read `mono_ns` at `wall`, for tests.
    pub fn at(mono_ns: u64, wall: SystemTime) -> Clock {
        Clock { mono_ns, wall }
    }

    pub fn wall_of(&self, kernel_ns: u64) -> SystemTime {
        if kernel_ns <= self.mono_ns {
            self.wall - Duration::from_nanos(self.mono_ns - kernel_ns)
        } else {
            self.wall + Duration::from_nanos(kernel_ns - self.mono_ns)
        }
    }

    /// RFC 3339 UTC with milliseconds.
    pub fn rfc3339(&self, kernel_ns: u64) -> String {
        humantime::format_rfc3339_millis(self.wall_of(kernel_ns)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_kernel_time_to_wall_time_both_ways() {
        let clock = Clock::at(10_000_000_000, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(clock.wall_of(9_000_000_000), SystemTime::UNIX_EPOCH + Duration::from_secs(999));
        assert_eq!(clock.wall_of(12_000_000_000), SystemTime::UNIX_EPOCH + Duration::from_secs(1_002));
        assert_eq!(clock.rfc3339(10_000_000_000), "1970-01-01T00:16:40.000Z");
    }
}
