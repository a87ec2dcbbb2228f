//! `lb`: build container images from Dockerfiles and run them, with no daemon.
//!
//! This binary is the command line only: it reads arguments, calls the library crates and
//! prints what they return. The work itself lives in the workspace crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use deferred::Deferred;

mod build_bridge;
mod build_cache;
mod build_cmd;
mod closed_output;
mod container_cmds;
mod deferred;
mod events_cmd;
mod filter_flags;
mod image_cmds;
mod inspect_cmd;
mod network_cmds;
mod parse_cmd;
mod prune_cmds;
mod registry_cmds;
mod storage_driver;
mod system_cmds;
mod system_df;
mod template;
mod volume_cmds;

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "Build container images from Dockerfiles and run them, with no daemon",
    disable_help_subcommand = false
)]
struct Cli {
    /// The store root (default: $LB_ROOT, else /var/lib/lb)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    /// The storage driver of a new store: overlay or vfs (default: $LB_STORAGE_DRIVER, else
    /// overlay, else vfs where overlayfs cannot be mounted); a store keeps the one it was
    /// made with
    #[arg(long, global = true, value_name = "DRIVER")]
    storage_driver: Option<String>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Build an image from a Dockerfile
    Build(Deferred<Box<build_cmd::BuildArgs>>),
    /// Parse a Dockerfile and print it as BuildKit's dump or as typed JSON
    Parse(Deferred<parse_cmd::ParseArgs>),
    /// Create an image from a root file system tar
    Import(Deferred<image_cmds::ImportArgs>),
    /// List images
    Images(Deferred<image_cmds::ImagesArgs>),
    /// Give an image another name
    Tag(Deferred<image_cmds::TagArgs>),
    /// Remove image names
    Rmi(Deferred<image_cmds::RmiArgs>),
    /// Show containers' or images' details as JSON (or through --format)
    Inspect(Deferred<inspect_cmd::InspectArgs>),
    /// Show how an image was made, newest step first
    History(Deferred<image_cmds::HistoryArgs>),
    /// Save images to a tar archive (OCI layout + docker manifest.json)
    Save(Deferred<image_cmds::SaveArgs>),
    /// Load images from a tar archive (docker, podman, OCI)
    Load(Deferred<image_cmds::LoadArgs>),
    /// Remove blobs that no image name reaches
    Prune,
    /// Download an image from a registry
    Pull(Deferred<registry_cmds::PullArgs>),
    /// Upload an image to a registry
    Push(Deferred<registry_cmds::PushArgs>),
    /// Log in to a registry (credentials stored with mode 0600)
    Login(Deferred<registry_cmds::LoginArgs>),
    /// Log out from a registry
    Logout(Deferred<registry_cmds::LogoutArgs>),
    /// Run a command in a new container
    Run(Deferred<Box<container_cmds::RunArgs>>),
    /// Create a new container (started later with `lb start`)
    Create(Deferred<Box<container_cmds::RunArgs>>),
    /// List containers
    Ps(Deferred<container_cmds::PsArgs>),
    /// Show a container's output
    Logs(Deferred<container_cmds::LogsArgs>),
    /// Stop running containers (StopSignal, then SIGKILL)
    Stop(Deferred<container_cmds::StopArgs>),
    /// Send a signal to running containers
    Kill(Deferred<container_cmds::KillArgs>),
    /// Remove containers
    Rm(Deferred<container_cmds::RmArgs>),
    /// Wait for containers to stop and print their exit codes
    Wait(Deferred<container_cmds::WaitArgs>),
    /// Make a new image from a container's changes
    Commit(Deferred<container_cmds::CommitArgs>),
    /// Run a command in a running container
    Exec(Deferred<container_cmds::ExecArgs>),
    /// Start stopped containers
    Start(Deferred<container_cmds::StartArgs>),
    /// Restart containers
    Restart(Deferred<container_cmds::RestartArgs>),
    /// Rename a container
    Rename(Deferred<container_cmds::RenameArgs>),
    /// Copy files/folders between a container and the local filesystem
    Cp(Deferred<container_cmds::CpArgs>),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(Deferred<container_cmds::DiffArgs>),
    /// Display a live stream of container(s) resource usage statistics
    Stats(Deferred<container_cmds::StatsArgs>),
    /// Display the running processes of a container
    Top(Deferred<container_cmds::TopArgs>),
    /// Get real time events from the store
    Events(Deferred<events_cmd::EventsArgs>),
    /// Update configuration of one or more containers
    Update(Deferred<container_cmds::UpdateArgs>),
    /// List port mappings or a specific mapping for the container
    Port(Deferred<container_cmds::PortArgs>),
    /// Pause all processes within containers
    Pause(Deferred<container_cmds::PauseArgs>),
    /// Unpause all processes within containers
    Unpause(Deferred<container_cmds::PauseArgs>),
    /// Write a container's file system as a tar archive
    Export(Deferred<container_cmds::ExportArgs>),
    /// Attach local standard input, output, and error streams to a running container
    Attach(Deferred<container_cmds::AttachArgs>),
    /// Manage networks
    #[command(subcommand)]
    Network(Deferred<network_cmds::NetworkCommands>),
    /// Store-wide commands
    #[command(subcommand)]
    System(SystemCommands),
    /// Show lb's version
    Version(Deferred<system_cmds::VersionArgs>),
    /// Show what the store holds and the host it runs on
    Info(Deferred<system_cmds::InfoArgs>),
    /// Manage containers
    #[command(subcommand)]
    Container(Deferred<ContainerCommands>),
    /// Manage builds
    #[command(subcommand)]
    Builder(BuilderCommands),
    /// Manage volumes
    #[command(subcommand)]
    Volume(Deferred<volume_cmds::VolumeCommands>),
    /// Manage images
    #[command(subcommand)]
    Image(Deferred<ImageCommands>),
}

/// `lb container ...`: docker's management-command names for the container commands.
#[derive(Subcommand)]
enum ContainerCommands {
    /// Create a new container
    Create(Box<container_cmds::RunArgs>),
    /// Run a command in a new container
    Run(Box<container_cmds::RunArgs>),
    /// Show containers' details as JSON (or through --format)
    Inspect(inspect_cmd::TypedInspectArgs),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(container_cmds::PsArgs),
    /// Show a container's output
    Logs(container_cmds::LogsArgs),
    /// Stop running containers
    Stop(container_cmds::StopArgs),
    /// Send a signal to running containers
    Kill(container_cmds::KillArgs),
    /// Remove containers
    Rm(container_cmds::RmArgs),
    /// Start stopped containers
    Start(container_cmds::StartArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(container_cmds::WaitArgs),
    /// Run a command in a running container
    Exec(container_cmds::ExecArgs),
    /// Write a container's file system as a tar archive
    Export(container_cmds::ExportArgs),
    /// Make a new image from a container's changes
    Commit(container_cmds::CommitArgs),
    /// Remove all stopped containers
    Prune(prune_cmds::PruneArgs),
    /// Restart containers
    Restart(container_cmds::RestartArgs),
    /// Rename a container
    Rename(container_cmds::RenameArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container_cmds::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container_cmds::DiffArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(container_cmds::StatsArgs),
    /// Display the running processes of a container
    Top(container_cmds::TopArgs),
    /// Update configuration of one or more containers
    Update(container_cmds::UpdateArgs),
    /// List port mappings or a specific mapping for the container
    Port(container_cmds::PortArgs),
    /// Pause all processes within containers
    Pause(container_cmds::PauseArgs),
    /// Unpause all processes within containers
    Unpause(container_cmds::PauseArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(container_cmds::AttachArgs),
}

/// `lb image ...`: docker's management-command names for the image commands.
#[derive(Subcommand)]
enum ImageCommands {
    /// Show images' details as JSON (or through --format)
    Inspect(inspect_cmd::TypedInspectArgs),
    /// List images
    #[command(visible_aliases = ["list"])]
    Ls(image_cmds::ImagesArgs),
    /// Remove image names
    Rm(image_cmds::RmiArgs),
    /// Give an image another name
    Tag(image_cmds::TagArgs),
    /// Show how an image was made, newest step first
    History(image_cmds::HistoryArgs),
    /// Save images to a tar archive
    Save(image_cmds::SaveArgs),
    /// Load images from a tar archive
    Load(image_cmds::LoadArgs),
    /// Create an image from a root file system tar
    Import(image_cmds::ImportArgs),
    /// Remove unused images
    Prune(prune_cmds::ImagePruneArgs),
}

#[derive(Subcommand)]
enum SystemCommands {
    /// Show what the store holds and what a prune would reclaim
    Df(system_df::DfArgs),
    /// Check the store: blobs against their digests, names against whole images,
    /// snapshots against their layers, leftovers of killed processes
    Check(image_cmds::CheckArgs),
    /// Show what the store holds and the host it runs on
    Info(system_cmds::InfoArgs),
    /// Remove stopped containers, unused networks, dangling images and build cache
    Prune(prune_cmds::SystemPruneArgs),
    /// Start the containers whose restart policy wants them running (always, and
    /// unless-stopped unless stopped by the user): for an init system or @reboot
    Boot,
}

/// `lb builder ...`: the build cache.
#[derive(Subcommand)]
enum BuilderCommands {
    /// Remove build cache
    Prune(prune_cmds::ImagePruneArgs),
}

fn main() -> ExitCode {
    // A detached container's monitor, exec'd by `run -d`/`start`: nothing of the CLI.
    if let Some(code) = lb_container::ops::monitor_from_handoff() {
        return ExitCode::from(code as u8);
    }
    closed_output::install_hook();
    // A print to a closed stdout or stderr panics (quietly, see the hook): the command
    // unwinds, dropping what it holds, and lb dies of SIGPIPE as docker does.
    match std::panic::catch_unwind(command) {
        Ok(code) => code,
        Err(p) if closed_output::is_closed_print_panic(p.as_ref()) => {
            closed_output::die_of_sigpipe()
        }
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn command() -> ExitCode {
    let cli = Cli::parse();
    let root = lb_layerstore::default_root(cli.root.as_deref());
    let store = || -> anyhow::Result<lb_layerstore::Store> {
        // A bad LB_MIN_FREE or LB_NETWORK_TIMEOUT is said before anything is written, not
        // at the first big write or request.
        lb_layerstore::MinFree::from_env()?;
        lb_registry::network_timeout_from_env()?;
        let wanted = storage_driver::wanted(cli.storage_driver.as_deref())?;
        Ok(lb_layerstore::Store::open_with(
            &root,
            wanted,
            storage_driver::default_for_new_store,
        )?)
    };
    let result = match cli.command {
        Commands::Parse(Deferred(args)) => parse_cmd::run(args),
        Commands::Build(Deferred(args)) => store().and_then(|s| build_cmd::build(&s, *args)),
        Commands::Import(Deferred(args)) => store().and_then(|s| image_cmds::import(&s, args)),
        Commands::Images(Deferred(args)) => store().and_then(|s| image_cmds::images(&s, args)),
        Commands::Tag(Deferred(args)) => store().and_then(|s| image_cmds::tag(&s, args)),
        Commands::Rmi(Deferred(args)) => store().and_then(|s| image_cmds::rmi(&s, args)),
        Commands::Inspect(Deferred(args)) => store().and_then(|s| inspect_cmd::inspect(&s, args)),
        Commands::History(Deferred(args)) => store().and_then(|s| image_cmds::history(&s, args)),
        Commands::Save(Deferred(args)) => store().and_then(|s| image_cmds::save(&s, args)),
        Commands::Load(Deferred(args)) => store().and_then(|s| image_cmds::load(&s, args)),
        Commands::Create(Deferred(args)) => {
            return match store() {
                Ok(s) => container_cmds::create(&s, *args),
                Err(e) => {
                    eprintln!("lb: {}", error_text(&e));
                    ExitCode::from(125)
                }
            };
        }
        Commands::Run(Deferred(args)) => {
            return match store() {
                Ok(s) => container_cmds::run(&s, *args),
                Err(e) => {
                    eprintln!("lb: {}", error_text(&e));
                    ExitCode::from(125)
                }
            };
        }
        Commands::Ps(Deferred(args)) => store().and_then(|s| container_cmds::ps(&s, args)),
        Commands::Logs(Deferred(args)) => store().and_then(|s| container_cmds::logs(&s, args)),
        Commands::Stop(Deferred(args)) => store().and_then(|s| container_cmds::stop(&s, args)),
        Commands::Kill(Deferred(args)) => store().and_then(|s| container_cmds::kill(&s, args)),
        Commands::Rm(Deferred(args)) => store().and_then(|s| container_cmds::rm(&s, args)),
        Commands::Wait(Deferred(args)) => store().and_then(|s| container_cmds::wait(&s, args)),
        Commands::Commit(Deferred(args)) => store().and_then(|s| container_cmds::commit(&s, args)),
        Commands::Exec(Deferred(args)) => store().and_then(|s| container_cmds::exec(&s, args)),
        Commands::Start(Deferred(args)) => store().and_then(|s| container_cmds::start(&s, args)),
        Commands::Restart(Deferred(args)) => {
            store().and_then(|s| container_cmds::restart(&s, args))
        }
        Commands::Rename(Deferred(args)) => store().and_then(|s| container_cmds::rename(&s, args)),
        Commands::Cp(Deferred(args)) => store().and_then(|s| container_cmds::cp(&s, args)),
        Commands::Diff(Deferred(args)) => store().and_then(|s| container_cmds::diff(&s, args)),
        Commands::Stats(Deferred(args)) => store().and_then(|s| container_cmds::stats(&s, args)),
        Commands::Top(Deferred(args)) => store().and_then(|s| container_cmds::top(&s, args)),
        Commands::Events(Deferred(args)) => store().and_then(|s| events_cmd::events(&s, args)),
        Commands::Update(Deferred(args)) => store().and_then(|s| container_cmds::update(&s, args)),
        Commands::Port(Deferred(args)) => store().and_then(|s| container_cmds::port(&s, args)),
        Commands::Pause(Deferred(args)) => store().and_then(|s| container_cmds::pause(&s, args)),
        Commands::Unpause(Deferred(args)) => {
            store().and_then(|s| container_cmds::unpause(&s, args))
        }
        Commands::Export(Deferred(args)) => store().and_then(|s| container_cmds::export(&s, args)),
        Commands::Attach(Deferred(args)) => store().and_then(|s| container_cmds::attach(&s, args)),
        Commands::Prune => store().and_then(|s| image_cmds::prune(&s)),
        Commands::Pull(Deferred(args)) => store().and_then(|s| registry_cmds::pull(&s, args)),
        Commands::Push(Deferred(args)) => store().and_then(|s| registry_cmds::push(&s, args)),
        Commands::Login(Deferred(args)) => registry_cmds::login(args),
        Commands::Logout(Deferred(args)) => registry_cmds::logout(args),
        Commands::Network(Deferred(cmd)) => store().and_then(|s| network_cmds::run(&s, cmd)),
        Commands::System(SystemCommands::Df(args)) => {
            store().and_then(|s| system_df::system_df(&s, args))
        }
        Commands::System(SystemCommands::Check(args)) => {
            store().and_then(|s| image_cmds::system_check(&s, args))
        }
        Commands::Version(Deferred(args)) => system_cmds::version(args),
        Commands::Info(Deferred(args)) | Commands::System(SystemCommands::Info(args)) => {
            store().and_then(|s| system_cmds::info(&s, args))
        }
        Commands::System(SystemCommands::Boot) => store().and_then(|s| system_cmds::boot(&s)),
        Commands::System(SystemCommands::Prune(args)) => {
            store().and_then(|s| prune_cmds::system_prune(&s, args))
        }
        Commands::Builder(BuilderCommands::Prune(args)) => {
            store().and_then(|s| prune_cmds::builder_prune(&s, args))
        }
        Commands::Volume(Deferred(cmd)) => store().and_then(|s| volume_cmds::run(&s, cmd)),
        Commands::Container(Deferred(cmd)) => store().and_then(|s| container_command(&s, cmd)),
        Commands::Image(Deferred(cmd)) => store().and_then(|s| image_command(&s, cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) if closed_output::is_closed_stdout_error(&e) => closed_output::die_of_sigpipe(),
        Err(e) => {
            eprintln!("lb: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

fn container_command(s: &lb_layerstore::Store, cmd: ContainerCommands) -> anyhow::Result<ExitCode> {
    use container_cmds as c;
    match cmd {
        ContainerCommands::Inspect(a) => a.run(s, inspect_cmd::Kind::Container),
        ContainerCommands::Create(a) => Ok(c::create(s, *a)),
        ContainerCommands::Run(a) => Ok(c::run(s, *a)),
        ContainerCommands::Ls(a) => c::ps(s, a),
        ContainerCommands::Logs(a) => c::logs(s, a),
        ContainerCommands::Stop(a) => c::stop(s, a),
        ContainerCommands::Kill(a) => c::kill(s, a),
        ContainerCommands::Rm(a) => c::rm(s, a),
        ContainerCommands::Start(a) => c::start(s, a),
        ContainerCommands::Wait(a) => c::wait(s, a),
        ContainerCommands::Exec(a) => c::exec(s, a),
        ContainerCommands::Export(a) => c::export(s, a),
        ContainerCommands::Commit(a) => c::commit(s, a),
        ContainerCommands::Prune(a) => prune_cmds::container_prune(s, a),
        ContainerCommands::Restart(a) => c::restart(s, a),
        ContainerCommands::Rename(a) => c::rename(s, a),
        ContainerCommands::Cp(a) => c::cp(s, a),
        ContainerCommands::Diff(a) => c::diff(s, a),
        ContainerCommands::Stats(a) => c::stats(s, a),
        ContainerCommands::Top(a) => c::top(s, a),
        ContainerCommands::Update(a) => c::update(s, a),
        ContainerCommands::Port(a) => c::port(s, a),
        ContainerCommands::Pause(a) => c::pause(s, a),
        ContainerCommands::Unpause(a) => c::unpause(s, a),
        ContainerCommands::Attach(a) => c::attach(s, a),
    }
}

fn image_command(s: &lb_layerstore::Store, cmd: ImageCommands) -> anyhow::Result<ExitCode> {
    use image_cmds as i;
    match cmd {
        ImageCommands::Inspect(a) => a.run(s, inspect_cmd::Kind::Image),
        ImageCommands::Ls(a) => i::images(s, a),
        ImageCommands::Rm(a) => i::rmi(s, a),
        ImageCommands::Tag(a) => i::tag(s, a),
        ImageCommands::History(a) => i::history(s, a),
        ImageCommands::Save(a) => i::save(s, a),
        ImageCommands::Load(a) => i::load(s, a),
        ImageCommands::Import(a) => i::import(s, a),
        ImageCommands::Prune(a) => prune_cmds::image_prune(s, a),
    }
}

/// An error as lb prints it: the chain of contexts, or, when a write found no room (the
/// disk full, or the store's file system at its reserve), that alone: `no space left on
/// device while WHAT (PATH)`, whatever was being done around it.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let no_space = e.chain().find_map(|c| {
        lb_layerstore::NoSpace::of(c).or_else(|| {
            c.downcast_ref::<lb_builder::BuildError>()
                .and_then(lb_builder::BuildError::out_of_space)
        })
    });
    match no_space {
        Some(n) => n.to_string(),
        None => chain_text(e),
    }
}

/// The error and its causes, `outer: cause: cause`, as anyhow's `{:#}` joins them, but a
/// cause the text already ends with is not repeated: the crates' errors say their source
/// in their own message (`PATH: Not a directory (os error 20)`) and also give it as their
/// `source()`, which `{:#}` printed twice.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_said_already_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(20);
        let said = lb_layerstore::Error::io_while("reading", std::path::Path::new("/x"), io);
        let text = super::error_text(&anyhow::Error::from(said));
        assert_eq!(text.matches("Not a directory").count(), 1, "{text}");
        let unsaid = anyhow::Error::from(std::io::Error::from_raw_os_error(2)).context("reading X");
        assert_eq!(
            super::error_text(&unsaid),
            "reading X: No such file or directory (os error 2)"
        );
    }

    /// The builder says an image source's or a network's error (now a value, no longer
    /// the text made here) as lb says any error: causes once each, no room alone.
    #[test]
    fn a_build_says_a_callers_error_as_lb_says_it() {
        let refused = std::io::Error::from_raw_os_error(111);
        let said = lb_layerstore::Error::io_while("reading", std::path::Path::new("/x"), refused);
        let full = lb_layerstore::Error::NoSpace(lb_layerstore::NoSpace::new("unpacking", "/s"));
        let errors = [
            anyhow::Error::from(std::io::Error::from_raw_os_error(111))
                .context("GET https://registry/v2/")
                .context("pulling alpine"),
            anyhow::Error::from(said).context("pulling alpine"),
            anyhow::Error::from(full).context("pulling alpine"),
        ];
        for e in errors {
            let text = super::error_text(&e);
            let image = lb_builder::ErrorKind::from(lb_builder::ImageError::Fetch {
                name: "alpine".into(),
                source: e.into(),
            });
            assert_eq!(image.to_string(), text);
        }
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(2)).context("netns");
        let text = super::error_text(&e);
        let network = lb_builder::BuildError::from(lb_builder::ErrorKind::Network(e.into()));
        assert_eq!(network.kind.to_string(), text);
    }
}
