//! `lb-monitor`: a detached container's monitor and nothing else. lb's `run -d` and
//! `start` exec it (when it is beside lb's executable) and hand the container over through
//! inherited descriptors and one environment variable (`lb_container::ops::handoff`). A
//! small executable: its relocated data and the code pages a monitor touches are a
//! fraction of lb's, whose command line, builder and registry client a monitor never runs
//! (issue 19's limit: a monitor under 3 MiB resident). Without it lb execs itself.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A healthcheck probe its monitor runs apart, so that the monitor stays small.
    if let Some(code) = lb_container::ops::probe_from_handoff() {
        return ExitCode::from(code as u8);
    }
    match lb_container::ops::monitor_from_handoff() {
        Some(code) => ExitCode::from(code as u8),
        None => {
            eprintln!("lb-monitor: started by lb only (lb run -d, lb start)");
            ExitCode::from(2)
        }
    }
}
