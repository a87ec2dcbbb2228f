//! A store written by an earlier lb is read and used by this one: a container record whose
//! config has no version, published ports as the `ps` strings and an untyped log
//! configuration (as session 7's lb wrote them), and a user network's definition, are
//! listed, started, logged, stopped and removed as any other.

use std::net::TcpStream;

mod common;
use common::*;

#[test]
fn an_earlier_record_and_network_work_as_they_did() {
    let Some(env) = setup() else { return };
    let o = lb(
        &env,
        &["network", "create", "--subnet", "10.214.250.0/24", "oldnet"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // A container made by this lb, then its record rewritten into the earlier form.
    let o = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "old",
            "--network",
            "oldnet",
            "-p",
            "127.0.0.1:0:80",
            "busybox",
            "nc",
            "-lk",
            "-p",
            "80",
            "-e",
            "echo",
            "hi",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    assert!(lb(&env, &["stop", "-t", "1", "old"]).status.success());
    let file = env.root.join("containers").join(&id).join("container.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let config = record["config"].as_object_mut().unwrap();
    let port = config["ports"][0]["host_port"]
        .as_u64()
        .expect("a typed port");
    config.remove("version");
    config.insert(
        "ports".into(),
        serde_json::json!([format!("127.0.0.1:{port}->80/tcp")]),
    );
    config.insert("stop_signal".into(), serde_json::Value::Null);
    std::fs::write(&file, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    let ps = text(&lb(&env, &["ps", "-a"]).stdout);
    assert!(ps.contains("old") && ps.contains("Exited"), "{ps}");
    let o = lb(&env, &["start", "old"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ps = text(&lb(&env, &["ps"]).stdout);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // Its published port serves again after the start.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port as u16)).is_err() {
        assert!(std::time::Instant::now() < end, "port {port} never served");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let nets = text(&lb(&env, &["network", "ls"]).stdout);
    assert!(nets.contains("oldnet"), "{nets}");
    let o = lb(&env, &["network", "rm", "oldnet"]);
    assert!(!o.status.success(), "a network in use was removed");
    assert!(
        text(&o.stderr).contains("has active endpoints (old)"),
        "{}",
        text(&o.stderr)
    );
    let o = lb(&env, &["rm", "-f", "old"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(lb(&env, &["network", "rm", "oldnet"]).status.success());
    // Written again by this lb (start saved nothing new): the record still reads.
    assert!(text(&lb(&env, &["ps", "-aq"]).stdout).is_empty());
}
