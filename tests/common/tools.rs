//! The external programs some tests run (nats-server, pebble), kept in the
//! git-ignored `.tools/bin/` and installed by their script in `scripts/`
//! when missing, so that `cargo test` alone is enough; and free ports for
//! them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// `.tools/bin/NAME`, running `scripts/SCRIPT` first when it is missing
/// (once at a time: tests in parallel wait for the first install).
pub fn installed_tool(name: &str, script: &str) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".tools/bin").join(name);
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let status = Command::new("bash")
            .arg(root.join("scripts").join(script))
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
        assert!(status.success(), "scripts/{script} failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
