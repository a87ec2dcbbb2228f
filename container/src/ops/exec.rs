//! `exec`: a new process in a running container's namespaces and cgroup, with the
//! container's confinement (capabilities, seccomp, no_new_privs) and environment, and the
//! options' command, environment, working directory and user on top.

use std::path::PathBuf;

use super::Container;
use crate::{Result, Status, run_spec};

/// What `exec` is asked for.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    /// The container's user unless given.
    pub user: Option<String>,
    pub tty: bool,
}

impl Container<'_> {
    /// The runtime's description of the process `opts` asks for, with lb's own streams
    /// until the caller sets `stdio`; `key` is how the caller named the container (for
    /// docker's refusal).
    pub fn exec_process(&self, key: &str, opts: &ExecOptions) -> Result<lb_runtime::Exec> {
        let st = self.state();
        Status::of(&st).can_exec(key)?;
        let mut spec = self.record.config.spec.clone();
        let mut process = spec.process().clone().unwrap_or_default();
        let mut env = process.env().clone().unwrap_or_default();
        if opts.tty {
            env.retain(|e| !e.starts_with("TERM="));
            env.push("TERM=xterm".into());
        }
        run_spec::add_env(&mut env, &opts.env_files, &opts.env)?;
        process.set_env(Some(env));
        process.set_args(Some(opts.command.clone()));
        process.set_terminal(Some(opts.tty));
        if let Some(w) = &opts.workdir {
            process.set_cwd(PathBuf::from(w));
        }
        spec.set_process(Some(process));
        // docker's exec events: an id for the exec, and the command in the action.
        let exec_id = super::random_id()?;
        let command = match opts.command.split_first() {
            Some((first, rest)) => format!("{first} {}", rest.join(" ")),
            None => String::new(),
        };
        for step in ["exec_create", "exec_start"] {
            self.event(&format!("{step}: {command}"), &[("execID", &exec_id)]);
        }
        *self.last_exec.lock().expect("last exec") = Some(exec_id);
        Ok(lb_runtime::Exec {
            id: self.record.id.clone(),
            pid: st.pid,
            spec,
            user: opts
                .user
                .clone()
                .or_else(|| self.record.config.user.clone()),
            group_add: self.record.config.host.group_add.clone(),
            seccomp: self.record.config.seccomp,
            stdio: lb_runtime::Stdio::Inherit,
        })
    }
}

impl Container<'_> {
    /// Logs the end of the process the last `exec_process` made (docker's `exec_die`).
    pub fn exec_ended(&self, exit_code: i32) {
        if let Some(id) = self.last_exec.lock().expect("last exec").take() {
            self.event(
                "exec_die",
                &[("execID", &id), ("exitCode", &exit_code.to_string())],
            );
        }
    }
}
