//! `lb build` against docker/BuildKit semantics, one case of `testdata/build/` per
//! behaviour: each is built with the real binary and checked by running the image or by
//! reading its config (through `lb inspect`, or the config blob itself for what `inspect`
//! does not show: Healthcheck, Shell, history).

use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::*;

/// Builds the case `name` tagged `name` (with `extra` options first); the image id.
fn build_case(env: &Env, name: &str, extra: &[&str]) -> String {
    let dir = case(name);
    let mut args = extra.to_vec();
    args.extend(["-t", name, dir.to_str().unwrap()]);
    let (code, id, log) = build(env, &args);
    assert_eq!(code, 0, "{log}");
    assert!(id.starts_with("sha256:"), "{id}");
    id
}

fn blob(env: &Env, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect(digest);
    std::fs::read(env.root.join("blobs/sha256").join(hex)).expect(digest)
}

/// The image config blob of image id `id` (the id is the config's digest).
fn image_json(env: &Env, id: &str) -> Value {
    serde_json::from_slice(&blob(env, id)).unwrap()
}

/// The manifest whose config is `id`, found through the store's index.
fn manifest(env: &Env, id: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(env.root.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let man: Value = serde_json::from_slice(&blob(env, m["digest"].as_str().unwrap())).unwrap();
        if man["config"]["digest"] == id {
            return man;
        }
    }
    panic!("no manifest for {id} in {index}");
}

/// The entry names of the image's last layer, as `tar -t` lists them.
fn last_layer_entries(env: &Env, id: &str) -> Vec<String> {
    let man = manifest(env, id);
    let digest = man["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = env
        .root
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let out = Command::new("tar").arg("-tf").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// Removes every unpacked snapshot, so the next run unpacks the layers from their blobs.
fn drop_snapshots(env: &Env) {
    let dir = env.root.join("snapshots");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `sh -c SCRIPT` in `image`: its standard output (the run must succeed).
fn sh(env: &Env, image: &str, script: &str) -> String {
    let (code, out, err) = run_image(env, &[], image, &["sh", "-c", script]);
    assert_eq!(code, 0, "{script}: {out}{err}");
    out
}

/// The Env entries other than PATH.
fn env_without_path(c: &Value) -> Vec<String> {
    c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap().to_string())
                .filter(|e| !e.starts_with("PATH="))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn copy_chown_with_names_from_the_image_and_numbers() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-chown-names", &[]);
    let out = sh(
        &env,
        "copy-chown-names",
        "cd /owned && stat -c '%u:%g %n' by-names.txt numeric.txt uid-only.txt tree/a.txt tree/inner tree/inner/b.txt",
    );
    assert_eq!(
        out,
        "1500:2000 by-names.txt\n1234:5678 numeric.txt\n4321:4321 uid-only.txt\n\
         1500:0 tree/a.txt\n1500:0 tree/inner\n1500:0 tree/inner/b.txt\n"
    );
}

#[test]
fn copy_chmod_sets_the_mode_of_files_and_directories() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-chmod", &[]);
    let out = sh(
        &env,
        "copy-chmod",
        "cd /modes && stat -c '%a %n' file-0640.txt file-755.txt tree/a.txt tree/sub tree/sub/b.txt as-is/script.sh as-is/file.txt",
    );
    assert_eq!(
        out,
        "640 file-0640.txt\n755 file-755.txt\n750 tree/a.txt\n750 tree/sub\n750 tree/sub/b.txt\n\
         755 as-is/script.sh\n644 as-is/file.txt\n"
    );
}

#[test]
fn copy_wildcards_and_several_sources() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-wildcards", &[]);
    let out = sh(
        &env,
        "copy-wildcards",
        "cd / && find star question class dirs several | sort",
    );
    assert_eq!(
        out,
        "class\nclass/b.txt\ndirs\ndirs/x.txt\ndirs/y.txt\nquestion\nquestion/file1.dat\n\
         question/file2.dat\nseveral\nseveral/a.txt\nseveral/notes.md\nstar\nstar/a.txt\nstar/b.txt\n"
    );
}

#[test]
fn copy_destinations_new_name_existing_dir_relative_and_parents() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-destinations", &[]);
    let out = sh(
        &env,
        "copy-destinations",
        "cat /renamed.txt /etc/a.txt /work/rel.txt /work/sub/a.txt /tmp/new/deeper/a.txt; \
         stat -c '%a %U %n' /etc /tmp /tmp/new /tmp/new/deeper /work/sub; \
         cd /copied-dir && find . | sort",
    );
    assert_eq!(
        out,
        "a\na\na\na\na\n755 root /etc\n1777 root /tmp\n755 root /tmp/new\n755 root /tmp/new/deeper\n\
         755 root /work/sub\n.\n./inner.txt\n./nested\n./nested/n.txt\n"
    );
}

#[test]
fn copy_follows_a_named_symlink_and_keeps_inner_ones() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-symlinks", &[]);
    let out = sh(
        &env,
        "copy-symlinks",
        "test -L /followed.txt && echo link || echo regular; cat /followed.txt; \
         readlink /tree/inner-link; test -L /tree/inner-link && cat /tree/file.txt",
    );
    assert_eq!(out, "regular\ntarget content\n../target.txt\nf\n");
}

#[test]
fn copy_from_an_image_a_stage_index_and_a_mixed_case_name() {
    let Some(env) = setup() else { return };
    build_case(&env, "copy-from-image-and-index", &[]);
    let out = sh(
        &env,
        "copy-from-image-and-index",
        "cat /from-image/group /from-index/zero.txt /from-name/produced.txt; tail -n 1 /etc/group",
    );
    assert_eq!(
        out,
        "root:x:0:\nnogroup:x:65534:\nzero\nproduced\nextra:x:99:\n"
    );
}

#[test]
fn a_chain_of_stages_with_case_insensitive_names() {
    let Some(env) = setup() else { return };
    build_case(&env, "multistage-chain", &[]);
    let (code, out, err) = run_image(&env, &[], "multistage-chain", &["cat", "list"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "base\nmiddle after base\nlast\n"),
        "{err}"
    );
    let c = config(&env, "multistage-chain");
    assert_eq!(c["WorkingDir"], "/chain");
    assert_eq!(env_without_path(&c), ["CHAIN=base"]);
}

#[test]
fn env_expansion_forms_in_env_workdir_and_copy() {
    let Some(env) = setup() else { return };
    build_case(&env, "env-expansion", &[]);
    let c = config(&env, "env-expansion");
    assert_eq!(
        env_without_path(&c),
        [
            "DIR=/opt/app",
            "NAME=demo",
            "dflt=fallback",
            "alt=set",
            "noalt=x",
            "literal=$DIR",
        ]
    );
    assert_eq!(c["WorkingDir"], "/opt/app/demo");
    let out = sh(
        &env,
        "env-expansion",
        "cat /pwd.txt /opt/app/copied-demo.txt; pwd",
    );
    assert_eq!(out, "/opt/app/demo\nf\n/opt/app/demo\n");
}

#[test]
fn env_pairs_expand_against_the_environment_before_the_instruction() {
    let Some(env) = setup() else { return };
    build_case(&env, "env-same-instruction", &[]);
    assert_eq!(
        env_without_path(&config(&env, "env-same-instruction")),
        ["abc=bye", "def=hello", "ghi=bye"]
    );
    assert_eq!(
        sh(&env, "env-same-instruction", "cat /seen.txt"),
        "bye hello bye\n"
    );
}

#[test]
fn arg_scope_global_stage_and_env() {
    let Some(env) = setup() else { return };
    build_case(&env, "arg-scope", &[]);
    let out = sh(&env, "arg-scope", "cat /first.txt /second.txt");
    assert_eq!(
        out,
        "global=from-global hidden=unset local=local-value both=env-value\nglobal=unset local=unset\n"
    );
    assert_eq!(
        env_without_path(&config(&env, "arg-scope")),
        [] as [&str; 0]
    );
}

#[test]
fn a_child_stage_inherits_its_parent_stage_args() {
    let Some(env) = setup() else { return };
    build_case(&env, "arg-inherited-by-child-stage", &[]);
    let out = sh(&env, "arg-inherited-by-child-stage", "cat /hello.txt");
    assert_eq!(out, "hello joe\n");
    assert_eq!(
        env_without_path(&config(&env, "arg-inherited-by-child-stage")),
        [] as [&str; 0]
    );
}

#[test]
fn shell_changes_shell_form_run_and_cmd_not_exec_form() {
    let Some(env) = setup() else { return };
    let id = build_case(&env, "shell-instruction", &[]);
    let out = sh(
        &env,
        "shell-instruction",
        "cat /flags.txt /shell-args.txt /exec.txt",
    );
    assert_eq!(
        out,
        "errexit\n--flag these words go to the recorder\nexec $NOT_EXPANDED\n"
    );
    let c = &image_json(&env, &id)["config"];
    assert_eq!(c["Shell"], json!(["/recorder", "--flag"]));
    assert_eq!(c["Cmd"], json!(["/recorder", "--flag", "echo as shell"]));
}

#[test]
fn run_as_a_user_by_name_and_by_ids() {
    let Some(env) = setup() else { return };
    build_case(&env, "run-as-user", &[]);
    let out = sh(
        &env,
        "run-as-user",
        "cd /out && cat by-name.txt by-ids.txt root.txt && stat -c '%u:%g' made-by-builder",
    );
    assert_eq!(out, "1200\n1250\n1300\n1400\n0\n1200:1250\n");
    assert_eq!(config(&env, "run-as-user")["User"], "root");
}

#[test]
fn run_network_none_has_only_loopback() {
    let Some(env) = setup() else { return };
    build_case(&env, "run-network-none", &[]);
    let (code, out, err) = run_image(&env, &[], "run-network-none", &["cat", "/ifaces.txt"]);
    assert_eq!((code, out.as_str()), (0, "lo\n"), "{err}");
}

#[test]
fn exec_form_entrypoint_takes_cmd_or_run_arguments() {
    let Some(env) = setup() else { return };
    build_case(&env, "entrypoint-exec-cmd", &[]);
    let c = config(&env, "entrypoint-exec-cmd");
    assert_eq!(c["Entrypoint"], json!(["echo", "entry"]));
    assert_eq!(c["Cmd"], json!(["default", "args"]));
    let (_, out, err) = run_image(&env, &[], "entrypoint-exec-cmd", &[]);
    assert_eq!(out, "entry default args\n", "{err}");
    let (_, out, err) = run_image(&env, &[], "entrypoint-exec-cmd", &["given"]);
    assert_eq!(out, "entry given\n", "{err}");
}

#[test]
fn shell_form_entrypoint_ignores_cmd_and_arguments() {
    let Some(env) = setup() else { return };
    build_case(&env, "entrypoint-shell-form", &[]);
    let c = config(&env, "entrypoint-shell-form");
    assert_eq!(
        c["Entrypoint"],
        json!(["/bin/sh", "-c", "echo shell entry"])
    );
    assert_eq!(c["Cmd"], json!(["ignored"]));
    let (_, out, err) = run_image(&env, &[], "entrypoint-shell-form", &[]);
    assert_eq!(out, "shell entry\n", "{err}");
    let (_, out, err) = run_image(&env, &[], "entrypoint-shell-form", &["x", "y"]);
    assert_eq!(out, "shell entry\n", "{err}");
}

#[test]
fn entrypoint_resets_an_inherited_cmd_only() {
    let Some(env) = setup() else { return };
    build_case(&env, "entrypoint-resets-cmd", &["--target", "reset"]);
    let c = config(&env, "entrypoint-resets-cmd");
    assert_eq!(
        (&c["Entrypoint"], &c["Cmd"]),
        (&json!(["echo", "reset"]), &Value::Null)
    );
    let (_, out, err) = run_image(&env, &[], "entrypoint-resets-cmd", &[]);
    assert_eq!(out, "reset\n", "{err}");
    build_case(&env, "entrypoint-resets-cmd", &[]);
    let c = config(&env, "entrypoint-resets-cmd");
    assert_eq!(
        (&c["Entrypoint"], &c["Cmd"]),
        (&json!(["echo"]), &json!(["kept cmd"]))
    );
    let (_, out, err) = run_image(&env, &[], "entrypoint-resets-cmd", &[]);
    assert_eq!(out, "kept cmd\n", "{err}");
}

#[test]
fn labels_pairs_quotes_and_override() {
    let Some(env) = setup() else { return };
    build_case(&env, "labels", &[]);
    assert_eq!(
        config(&env, "labels")["Labels"],
        json!({
            "a": "replaced",
            "key with space": "value with space",
            "quoted": "say \"hi\"",
            "single": "$VERSION",
            "version": "1.2.3",
            "multi": "one two",
        })
    );
}

#[test]
fn expose_volume_stopsignal_healthcheck_in_the_config() {
    let Some(env) = setup() else { return };
    let id = build_case(&env, "config-metadata", &[]);
    let ports = json!({
        "80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {},
        "443/tcp": {}, "9000/tcp": {},
    });
    let volumes = json!({"/data": {}, "/var/log": {}, "/plain": {}, "/other": {}});
    let c = config(&env, "config-metadata");
    assert_eq!(c["ExposedPorts"], ports);
    assert_eq!(c["Volumes"], volumes);
    assert_eq!(c["StopSignal"], "SIGUSR1");
    let raw = &image_json(&env, &id)["config"];
    assert_eq!(raw["ExposedPorts"], ports);
    assert_eq!(raw["Volumes"], volumes);
    assert_eq!(raw["StopSignal"], "SIGUSR1");
    assert_eq!(
        raw["Healthcheck"],
        json!({
            "Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
            "Interval": 30_000_000_000i64,
            "Timeout": 5_000_000_000i64,
            "StartPeriod": 60_000_000_000i64,
            "StartInterval": 2_000_000_000i64,
            "Retries": 4,
        })
    );
}

#[test]
fn healthcheck_exec_form_and_none() {
    let Some(env) = setup() else { return };
    let id = build_case(&env, "healthcheck-forms", &["--target", "checked"]);
    assert_eq!(
        image_json(&env, &id)["config"]["Healthcheck"],
        json!({"Test": ["CMD", "/bin/true", "arg"]})
    );
    let id = build_case(&env, "healthcheck-forms", &[]);
    assert_eq!(
        image_json(&env, &id)["config"]["Healthcheck"],
        json!({"Test": ["NONE"]})
    );
}

#[test]
fn history_has_one_entry_per_instruction_and_empty_layer_flags() {
    let Some(env) = setup() else { return };
    let base = image_json(&env, &config_id(&env, "busybox"));
    let base_history = base["history"].as_array().map_or(0, |h| h.len());
    let base_layers = base["rootfs"]["diff_ids"].as_array().unwrap().len();
    let id = build_case(&env, "history-empty-layer", &[]);
    let img = image_json(&env, &id);
    let history = img["history"].as_array().unwrap();
    let ours: Vec<(bool, &str)> = history[base_history..]
        .iter()
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or("");
            (h["empty_layer"].as_bool().unwrap_or(false), by)
        })
        .collect();
    let flags: Vec<bool> = ours.iter().map(|(e, _)| *e).collect();
    assert_eq!(
        flags,
        [true, true, true, false, false, false, true, true, true],
        "{ours:#?}"
    );
    let starts: Vec<&str> = ours
        .iter()
        .map(|(_, by)| by.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "ARG", "ENV", "LABEL", "RUN", "COPY", "WORKDIR", "EXPOSE", "USER", "CMD"
        ]
    );
    let layers = img["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers, base_layers + 3);
    assert_eq!(
        manifest(&env, &id)["layers"].as_array().unwrap().len(),
        layers
    );
    let hist = text(&lb(&env, &["history", "history-empty-layer"]).stdout);
    assert_eq!(hist.lines().count(), 1 + base_history + 9, "{hist}");
}

/// The config digest (image id) of a named image, from `lb inspect`.
fn config_id(env: &Env, image: &str) -> String {
    let out = lb(env, &["inspect", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn history_created_by_as_buildkit_writes_it() {
    let Some(env) = setup() else { return };
    let base = image_json(&env, &config_id(&env, "busybox"));
    let base_history = base["history"].as_array().map_or(0, |h| h.len());
    let id = build_case(&env, "history-created-by", &[]);
    let img = image_json(&env, &id);
    let by: Vec<&str> = img["history"].as_array().unwrap()[base_history..]
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        by,
        [
            "ARG FLAVOR=plain",
            "ENV MODE=test OTHER=plain",
            "LABEL stage=history",
            "RUN |1 FLAVOR=plain /bin/sh -c echo \"$FLAVOR\" > /flavor.txt # buildkit",
            "COPY --chmod=644 file.txt /file.txt # buildkit",
            "WORKDIR /work",
            // BuildKit sorts EXPOSE's words when it parses them (parseExpose).
            "EXPOSE [53/udp 8080/tcp]",
            "VOLUME [/data]",
            "SHELL [/bin/sh -ec]",
            "STOPSIGNAL SIGTERM",
            "USER nobody",
            "ENTRYPOINT [\"cat\"]",
            "CMD [\"/flavor.txt\" \"/file.txt\"]",
        ]
    );
}

#[test]
fn add_copies_a_non_archive_file_as_it_is() {
    let Some(env) = setup() else { return };
    build_case(&env, "add-local-file", &[]);
    let out = sh(
        &env,
        "add-local-file",
        "cat /added/plain.txt /added-renamed.txt; zcat /added/notatar.txt.gz; ls /added",
    );
    assert_eq!(
        out,
        "plain text\nplain text\ncompressed, not a tar\nnotatar.txt.gz\nplain.txt\n"
    );
    let size = std::fs::metadata(case("add-local-file").join("notatar.txt.gz"))
        .unwrap()
        .len();
    let out = sh(&env, "add-local-file", "stat -c %s /added/notatar.txt.gz");
    assert_eq!(out, format!("{size}\n"));
}

#[test]
fn add_merges_a_tar_into_an_existing_directory() {
    let Some(env) = setup() else { return };
    build_case(&env, "add-tar-into-existing", &[]);
    let out = sh(
        &env,
        "add-tar-into-existing",
        "cd /target && find . | sort && cat existing.txt replaced.txt new.txt keep/k.txt keep/added.txt sub/deep.txt \
         && stat -c '%a %u:%g %n' new.txt sub sub/deep.txt existing.txt",
    );
    assert_eq!(
        out,
        ".\n./existing.txt\n./keep\n./keep/added.txt\n./keep/k.txt\n./new.txt\n./replaced.txt\n./sub\n./sub/deep.txt\n\
         kept\nnew\nfresh\nk\nadded\ndeep\n\
         600 1000:1000 new.txt\n750 1000:1000 sub\n644 1000:1000 sub/deep.txt\n644 0:0 existing.txt\n"
    );
}

#[test]
fn deleting_base_and_earlier_files_leaves_whiteouts() {
    let Some(env) = setup() else { return };
    let id = build_case(&env, "whiteout-delete", &[]);
    let script = "ls /added; ls -a /var; test -e /bin/true && echo true-still-there || echo true-gone; \
                  test -L /bin/false && echo false-kept";
    let expected = "b.txt\n.\n..\ntrue-gone\nfalse-kept\n";
    assert_eq!(sh(&env, "whiteout-delete", script), expected);
    // The layer says so (OCI whiteouts), and the image unpacked from its layers agrees.
    let mut entries = last_layer_entries(&env, &id);
    entries.retain(|e| e.contains(".wh."));
    entries.sort();
    assert_eq!(entries, ["added/.wh.a.txt", "bin/.wh.true", "var/.wh.tmp"]);
    drop_snapshots(&env);
    assert_eq!(sh(&env, "whiteout-delete", script), expected);
}

#[test]
fn replacing_directories_and_files_in_a_later_layer() {
    let Some(env) = setup() else { return };
    build_case(&env, "whiteout-replace-dir", &[]);
    let script = "find /d /dir-to-file /file-to-dir | sort; cat /dir-to-file /d/new.txt /file-to-dir/inside.txt";
    let expected = "/d\n/d/new.txt\n/dir-to-file\n/file-to-dir\n/file-to-dir/inside.txt\nnow-a-file\nnew\ninside\n";
    assert_eq!(sh(&env, "whiteout-replace-dir", script), expected);
    // Unpacked again from the layer blobs: the same tree.
    drop_snapshots(&env);
    assert_eq!(sh(&env, "whiteout-replace-dir", script), expected);
}

#[test]
fn workdir_relative_paths() {
    let Some(env) = setup() else { return };
    build_case(&env, "workdir-relative", &[]);
    let out = sh(
        &env,
        "workdir-relative",
        "cat /pwd.txt; pwd; test -d /a/b && echo a-b-made; stat -c '%a %u:%g %n' /a/c/d /tmp",
    );
    assert_eq!(
        out,
        "/a/c/d\n/tmp\na-b-made\n755 0:0 /a/c/d\n1777 0:0 /tmp\n"
    );
    assert_eq!(config(&env, "workdir-relative")["WorkingDir"], "/tmp");
}

#[test]
fn workdir_under_user_belongs_to_the_user() {
    let Some(env) = setup() else { return };
    build_case(&env, "workdir-owner-under-user", &[]);
    let out = sh(
        &env,
        "workdir-owner-under-user",
        "stat -c '%a %u:%g' /owned-by-nobody",
    );
    assert_eq!(out, "755 65534:65534\n");
}

#[test]
fn from_scratch_with_a_file_from_an_image() {
    let Some(env) = setup() else { return };
    build_case(&env, "scratch-base", &[]);
    let (code, out, err) = run_image(&env, &[], "scratch-base", &[]);
    assert_eq!((code, out.as_str()), (0, "from scratch\n"), "{err}");
    let c = config(&env, "scratch-base");
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=")),
        "{c}"
    );
    assert_eq!(
        c["WorkingDir"], "/",
        "BuildKit's empty image has WorkingDir /"
    );
    let (_, out, _) = run_image(
        &env,
        &["--entrypoint", "/bin/busybox"],
        "scratch-base",
        &["ls", "/"],
    );
    assert_eq!(out, "bin\ndev\netc\nproc\nsys\n");
}

#[test]
fn run_sees_args_under_env() {
    let Some(env) = setup() else { return };
    build_case(&env, "arg-env-precedence", &["--build-arg", "UNDECLARED=x"]);
    assert_eq!(
        sh(&env, "arg-env-precedence", "cat /seen.txt"),
        "from-env arg-value [unset]\n"
    );
}

#[test]
fn a_secret_as_a_variable_is_in_no_layer_or_history() {
    let Some(env) = setup() else { return };
    let file = env.root.parent().unwrap().join("api-token");
    std::fs::write(&file, "s3cr3t-value").unwrap();
    let secret = format!("id=api,src={}", file.display());
    let id = build_case(&env, "secret-env", &["--secret", &secret]);
    assert_eq!(sh(&env, "secret-env", "cat /token-length"), "12 chars\n");
    let config = serde_json::to_string(&image_json(&env, &id)).unwrap();
    assert!(!config.contains("s3cr3t"), "{config}");
    let layer = last_layer_entries(&env, &id);
    assert!(layer.iter().all(|e| !e.contains("secrets")), "{layer:?}");
}

#[test]
fn run_sees_the_hosts_resolver_and_keeps_no_etc_files() {
    let Some(env) = setup() else { return };
    let id = build_case(&env, "run-etc-files", &[]);
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(sh(&env, "run-etc-files", "cat /resolv-seen"), host);
    assert!(
        sh(&env, "run-etc-files", "cat /hosts-seen").contains("localhost"),
        "no localhost in the step's /etc/hosts"
    );
    // The files were bound over mount points the step made: the layer holds neither.
    let mut entries = last_layer_entries(&env, &id);
    entries.retain(|e| !e.is_empty());
    entries.sort();
    assert_eq!(entries, ["etc/", "hosts-seen", "resolv-seen"]);
}

#[test]
fn links_in_the_context_resolve_inside_it() {
    let Some(env) = setup() else { return };
    build_case(&env, "links-in-context", &[]);
    let out = sh(
        &env,
        "links-in-context",
        "cat /via-abs.txt /via-up.txt /alias; readlink /tree/hostlink; tr '\\n' ' ' < /listing",
    );
    assert_eq!(
        out,
        "inside\ninside\ndangling\n/etc/passwd\n. .. .dockerignore Dockerfile abs alias real tree up "
    );
}
