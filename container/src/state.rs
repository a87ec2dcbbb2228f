//! The states a container goes through, as docker names them, and what each allows: the
//! one place that decides whether a container may be started, killed, removed, paused or
//! exec'd into, refusing with docker's messages (`lb` prints them and exits non-zero).

use lb_runtime::state::{State, Status as RunStatus};

use crate::Error;

/// A container's status, docker's `State.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Made, never started.
    Created,
    Running,
    /// Frozen (`lb pause`).
    Paused,
    /// Between runs of a restart policy.
    Restarting,
    Exited,
    /// Its removal failed half way.
    Dead,
}

impl Status {
    /// The status of a container whose run state is `state`.
    pub fn of(state: &State) -> Status {
        match state.status {
            RunStatus::Created => Status::Created,
            RunStatus::Running if state.paused => Status::Paused,
            RunStatus::Running => Status::Running,
            RunStatus::Exited if state.restarting => Status::Restarting,
            RunStatus::Exited => Status::Exited,
        }
    }

    /// docker's word for it (`State.Status`, `ps --filter status=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether its processes exist (running or frozen).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }

    /// `start`: a running container is left as it is (docker's start succeeds on it); the
    /// caller checks `is_live` for that.
    pub fn can_start(self, key: &str) -> Result<(), Error> {
        match self {
            Status::Paused => Err(Error::Conflict(
                "cannot start a paused container, try unpause instead".into(),
            )),
            Status::Dead => Err(Error::Conflict(format!(
                "container {key} is marked for removal and cannot be started"
            ))),
            _ => Ok(()),
        }
    }

    /// `kill`: only what runs.
    pub fn can_kill(self, id: &str) -> Result<(), Error> {
        if self.is_live() {
            Ok(())
        } else {
            Err(Error::Conflict(format!("container {id} is not running")))
        }
    }

    /// `rm`: a live container only with `--force`; `key` is the container's id, as docker
    /// 20.10 names it in the refusal.
    pub fn can_remove(self, key: &str, force: bool) -> Result<(), Error> {
        match self {
            Status::Paused if !force => Err(Error::Conflict(format!(
                "You cannot remove a paused container {key}. Unpause and then stop the container before attempting removal or force remove"
            ))),
            s if s.is_live() && !force => Err(Error::Conflict(format!(
                "You cannot remove a running container {key}. Stop the container before attempting removal or force remove"
            ))),
            _ => Ok(()),
        }
    }

    /// `exec`: into a running container only.
    pub fn can_exec(self, key: &str) -> Result<(), Error> {
        match self {
            Status::Running => Ok(()),
            Status::Paused => Err(Error::Conflict(format!(
                "Container {key} is paused, unpause the container before exec"
            ))),
            _ => Err(Error::Conflict(format!("container {key} is not running"))),
        }
    }

    /// `attach`: a running container (docker's CLI's checks and words).
    pub fn can_attach(self) -> Result<(), Error> {
        match self {
            Status::Running => Ok(()),
            Status::Paused => Err(Error::Conflict(
                "You cannot attach to a paused container, unpause it first".into(),
            )),
            Status::Restarting => Err(Error::Conflict(
                "You cannot attach to a restarting container, wait until it is running".into(),
            )),
            _ => Err(Error::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            )),
        }
    }

    /// `pause`: a running container, once.
    pub fn can_pause(self, id: &str) -> Result<(), Error> {
        match self {
            Status::Running => Ok(()),
            Status::Paused => Err(Error::Conflict(format!("Container {id} is already paused"))),
            _ => Err(Error::Conflict(format!("Container {id} is not running"))),
        }
    }

    /// `unpause`: a paused container.
    pub fn can_unpause(self, id: &str) -> Result<(), Error> {
        if self == Status::Paused {
            Ok(())
        } else {
            Err(Error::Conflict(format!("Container {id} is not paused")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 6] = [
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Restarting,
        Status::Exited,
        Status::Dead,
    ];

    #[test]
    fn transitions_refuse_what_docker_refuses() {
        for s in ALL {
            assert_eq!(s.can_kill("c").is_ok(), s.is_live(), "{s:?}");
            assert_eq!(s.can_remove("c", false).is_ok(), !s.is_live(), "{s:?}");
            assert!(s.can_remove("c", true).is_ok(), "{s:?}");
            assert_eq!(s.can_exec("c").is_ok(), s == Status::Running, "{s:?}");
            assert_eq!(s.can_pause("c").is_ok(), s == Status::Running, "{s:?}");
            assert_eq!(s.can_unpause("c").is_ok(), s == Status::Paused, "{s:?}");
            assert_eq!(
                s.can_start("c").is_ok(),
                !matches!(s, Status::Paused | Status::Dead),
                "{s:?}"
            );
        }
    }

    #[test]
    fn refusals_carry_dockers_messages() {
        let text = |r: Result<(), Error>| r.unwrap_err().to_string();
        assert_eq!(
            text(Status::Exited.can_kill("abc")),
            "container abc is not running"
        );
        assert_eq!(
            text(Status::Running.can_remove("web", false)),
            "You cannot remove a running container web. Stop the container before attempting removal or force remove"
        );
        assert_eq!(
            text(Status::Paused.can_start("web")),
            "cannot start a paused container, try unpause instead"
        );
    }

    #[test]
    fn run_states_map_to_statuses() {
        let mut st = State::default();
        assert_eq!(Status::of(&st), Status::Created);
        st.status = RunStatus::Exited;
        assert_eq!(Status::of(&st).as_str(), "exited");
    }
}
