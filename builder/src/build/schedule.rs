//! The build's schedule, step by step rather than stage by stage: every stage the target
//! needs starts at once on a thread of its own and runs its steps in order (a stage is the
//! chain of its steps), and a step that reads another stage (its base, `COPY --from`,
//! `RUN --mount from=`, an ONBUILD trigger's source) waits for that stage alone. So a
//! final stage's `apt-get install` runs beside the stage it later copies from, as in
//! BuildKit's op-level graph.
//!
//! Also here: identical work once (the first step to reach a cache key runs it, any other
//! step with that key in the build waits and takes its image), a budget of steps running
//! at once (`--jobs`), and cancellation: the first failure is the build's; every other
//! stage stops at its next step, and RUN processes still running are killed.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};

use lb_layerstore::{Digest, Image};

use super::state::StageState;
use crate::error::{BuildError, ErrorKind};

/// Where one stage stands.
enum StageSlot {
    /// Not among the stages the target needs (yet): built on demand by the first step
    /// that reads it.
    Unplanned,
    /// Being built, by its own thread or on demand.
    Pending,
    Built(Box<StageState>),
}

/// A cache key some step of this build ran (or runs).
enum Flight {
    Running,
    Done(Box<Image>),
}

/// What a step that missed the cache does with its key.
pub(super) enum Claim {
    /// No step of this build has it: this one runs it, and publishes what it made.
    Run,
    /// Another step of this build made it: its image.
    Made(Box<Image>),
}

struct Board {
    stages: Vec<StageSlot>,
    flights: HashMap<Digest, Flight>,
    /// Steps holding a job now (only counted under `--jobs`).
    jobs_taken: usize,
    /// The first failure, once there is one: the build is over.
    failure: Option<BuildError>,
    /// RUN processes running now, as pidfds (a pidfd never names a reused pid).
    processes: HashMap<u64, OwnedFd>,
    next_process: u64,
    /// The base images whose FROM step has been shown.
    shown_bases: std::collections::HashSet<String>,
}

pub(super) struct Schedule {
    board: Mutex<Board>,
    /// Rung at every change of the board: a stage built, a key made, a job given back,
    /// a failure.
    changed: Condvar,
    jobs: Option<usize>,
}

/// A job held by a running step, given back on drop.
pub(super) struct Job<'a> {
    schedule: Option<&'a Schedule>,
}

/// A running RUN process, killed if the build fails while it runs; forgotten on drop.
pub(super) struct Process<'a> {
    schedule: &'a Schedule,
    id: u64,
}

impl Schedule {
    /// A schedule for `count` stages, of which `planned` are to be built.
    pub(super) fn new(count: usize, planned: &[usize], jobs: Option<usize>) -> Schedule {
        let mut stages: Vec<StageSlot> = (0..count).map(|_| StageSlot::Unplanned).collect();
        for &i in planned {
            stages[i] = StageSlot::Pending;
        }
        Schedule {
            board: Mutex::new(Board {
                stages,
                flights: HashMap::new(),
                jobs_taken: 0,
                failure: None,
                processes: HashMap::new(),
                next_process: 0,
                shown_bases: Default::default(),
            }),
            changed: Condvar::new(),
            jobs: jobs.filter(|n| *n > 0),
        }
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        // A thread that panicked holding the lock left the board as it was: still whole.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, board: MutexGuard<'a, Board>) -> MutexGuard<'a, Board> {
        self.changed.wait(board).unwrap_or_else(|p| p.into_inner())
    }

    /// The build has failed: steps stop at their next check.
    pub(super) fn check(&self) -> Result<(), BuildError> {
        match self.board().failure {
            Some(_) => Err(BuildError::new(ErrorKind::Canceled)),
            None => Ok(()),
        }
    }

    /// Records a stage's failure: the first one is the build's (a step stopped because of
    /// it says `Canceled` and is not); every running RUN process is killed.
    pub(super) fn fail(&self, e: BuildError) {
        let mut board = self.board();
        // Steps say `Canceled` only once a failure is recorded: the first is never one.
        if board.failure.is_none() {
            board.failure = Some(e);
            for fd in board.processes.values() {
                kill(fd);
            }
        }
        drop(board);
        self.changed.notify_all();
    }

    /// The build's failure, if it had one.
    pub(super) fn take_failure(&self) -> Option<BuildError> {
        self.board().failure.take()
    }

    /// Stage `i` once built. A stage no thread builds is built here, on demand, by
    /// `build` (only an earlier stage than the reader's: stages never wait in a cycle).
    pub(super) fn stage(
        &self,
        i: usize,
        reader: usize,
        build: impl FnOnce() -> Result<StageState, BuildError>,
    ) -> Result<Option<StageState>, BuildError> {
        let mut board = self.board();
        loop {
            if board.failure.is_some() {
                return Err(BuildError::new(ErrorKind::Canceled));
            }
            match &board.stages[i] {
                StageSlot::Built(s) => return Ok(Some((**s).clone())),
                StageSlot::Unplanned if i < reader => {
                    board.stages[i] = StageSlot::Pending;
                    drop(board);
                    let built = build()?;
                    self.finished(i, built.clone());
                    return Ok(Some(built));
                }
                StageSlot::Unplanned => return Ok(None),
                StageSlot::Pending => board = self.wait(board),
            }
        }
    }

    /// Whether this is the first stage of the build on `image`: BuildKit shows one step
    /// for every stage on the same image.
    pub(super) fn first_to_show(&self, image: String) -> bool {
        self.board().shown_bases.insert(image)
    }

    /// Stage `i` is built.
    pub(super) fn finished(&self, i: usize, state: StageState) {
        self.board().stages[i] = StageSlot::Built(Box::new(state));
        self.changed.notify_all();
    }

    /// Stage `i`'s result, taken out at the end of the build.
    pub(super) fn take(&self, i: usize) -> Option<StageState> {
        match std::mem::replace(&mut self.board().stages[i], StageSlot::Unplanned) {
            StageSlot::Built(s) => Some(*s),
            _ => None,
        }
    }

    /// A step missed the cache with `key`: run it, unless another step of the build has
    /// (then its image) or is running it (then wait for it).
    pub(super) fn claim(&self, key: &Digest) -> Result<Claim, BuildError> {
        let mut board = self.board();
        loop {
            if board.failure.is_some() {
                return Err(BuildError::new(ErrorKind::Canceled));
            }
            match board.flights.get(key) {
                None => {
                    board.flights.insert(*key, Flight::Running);
                    return Ok(Claim::Run);
                }
                Some(Flight::Done(image)) => return Ok(Claim::Made(image.clone())),
                Some(Flight::Running) => board = self.wait(board),
            }
        }
    }

    /// The step that claimed `key` made `image`.
    pub(super) fn made(&self, key: &Digest, image: &Image) {
        self.board()
            .flights
            .insert(*key, Flight::Done(Box::new(image.clone())));
        self.changed.notify_all();
    }

    /// A job for a step that does work (a RUN's process, a COPY's copying): at once, or
    /// when one is given back under `--jobs`.
    pub(super) fn job(&self) -> Result<Job<'_>, BuildError> {
        let Some(limit) = self.jobs else {
            return Ok(Job { schedule: None });
        };
        let mut board = self.board();
        loop {
            if board.failure.is_some() {
                return Err(BuildError::new(ErrorKind::Canceled));
            }
            if board.jobs_taken < limit {
                board.jobs_taken += 1;
                return Ok(Job {
                    schedule: Some(self),
                });
            }
            board = self.wait(board);
        }
    }

    /// Tracks the RUN process `pid` while it runs; killed at once if the build has
    /// already failed.
    pub(super) fn process(&self, pid: i32) -> Process<'_> {
        let mut board = self.board();
        let id = board.next_process;
        board.next_process += 1;
        if let Some(fd) = pidfd_open(pid) {
            if board.failure.is_some() {
                kill(&fd);
            }
            board.processes.insert(id, fd);
        }
        Process { schedule: self, id }
    }
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.schedule {
            s.board().jobs_taken -= 1;
            s.changed.notify_all();
        }
    }
}

impl Drop for Process<'_> {
    fn drop(&mut self) {
        self.schedule.board().processes.remove(&self.id);
    }
}

/// A pidfd for `pid` (Linux 5.3 and later); None where there is none, and then the
/// process is not killed on failure (it ends when the build's lb does).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just made and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILL to the process of a pidfd: the PID 1 of a step's namespace, whose end ends
/// every process there.
fn kill(fd: &OwnedFd) {
    // SAFETY: pidfd_send_signal takes a pidfd, a signal, a null info and flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_bounded_and_given_back() {
        let s = Schedule::new(1, &[0], Some(2));
        let a = s.job().unwrap();
        let _b = s.job().unwrap();
        std::thread::scope(|t| {
            let third = t.spawn(|| s.job().map(|_| ()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!third.is_finished(), "a third job waits for one of two");
            drop(a);
            third.join().unwrap().unwrap();
        });
    }

    #[test]
    fn a_failure_wakes_waiters_as_canceled_and_is_the_builds() {
        let s = Schedule::new(2, &[0, 1], None);
        std::thread::scope(|t| {
            let waiter = t.spawn(|| s.stage(0, 1, || unreachable!()).map(|_| ()));
            std::thread::sleep(std::time::Duration::from_millis(20));
            s.fail(BuildError::new(ErrorKind::Invalid("first".into())));
            s.fail(BuildError::new(ErrorKind::Invalid("second".into())));
            let e = waiter.join().unwrap().unwrap_err();
            assert!(matches!(e.kind, ErrorKind::Canceled));
        });
        assert_eq!(s.take_failure().unwrap().kind.to_string(), "first");
    }

    #[test]
    fn a_key_is_run_once_and_the_others_take_its_image() {
        let s = Schedule::new(1, &[0], None);
        let key = Digest::of(b"step");
        assert!(matches!(s.claim(&key).unwrap(), Claim::Run));
        let dir = tempfile::tempdir().unwrap();
        let store = lb_layerstore::Store::open(dir.path()).unwrap();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}});
        let image = store.write_image(&config, &[], &[]).unwrap();
        std::thread::scope(|t| {
            let second = t.spawn(|| s.claim(&key));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!second.is_finished(), "the second waits for the first");
            s.made(&key, &image);
            match second.join().unwrap().unwrap() {
                Claim::Made(i) => assert_eq!(i.manifest_digest, image.manifest_digest),
                Claim::Run => panic!("ran twice"),
            }
        });
    }
}
