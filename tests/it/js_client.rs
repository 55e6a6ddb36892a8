//! The JavaScript client (`clients/js/hookfan.js`) and the live events page
//! (`/ui/`): `node --test clients/js/test/` against this build's daemon,
//! the client under Node with the npm `ws` package and the page in headless
//! Chromium. The npm dev dependencies are installed by
//! `scripts/install-js-deps.sh` and Chromium by `scripts/install-chromium.sh`
//! when missing. Without Node.js the test says so and does nothing; without
//! a Chromium that can be installed, the browser tests skip, saying why.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on the whole `node --test` run (each of its tests bounds its own
/// waits far below this); past it, node and its children are killed.
const NODE_LIMIT: Duration = Duration::from_secs(300);

/// The major version of `node` on PATH, or None when there is none.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim().strip_prefix('v')?.split('.').next()?.parse().ok()
}

#[test]
fn node_tests_of_the_client_and_the_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match node_major() {
        None => {
            println!(
                "js_client: SKIPPED: Node.js is not installed (`node` is not on PATH); \
                 install Node.js 20 or later to test clients/js/hookfan.js and the /ui/ page"
            );
            return;
        }
        Some(v) if v < 20 => {
            println!(
                "js_client: SKIPPED: Node.js {v} is too old; the JavaScript tests need 20 or later"
            );
            return;
        }
        Some(_) => {}
    }
    let start = Instant::now();
    let deps = Command::new("bash")
        .arg(root.join("scripts/install-js-deps.sh"))
        .status()
        .expect("run scripts/install-js-deps.sh");
    assert!(deps.success(), "scripts/install-js-deps.sh failed");

    let chromium = Command::new("bash")
        .arg(root.join("scripts/install-chromium.sh"))
        .stderr(Stdio::piped())
        .output()
        .expect("run scripts/install-chromium.sh");
    let path = String::from_utf8_lossy(&chromium.stdout).trim().to_owned();
    let mut node = Command::new("node");
    node.args([
        "--test",
        "--test-reporter=spec",
        "--test-timeout=120000",
        "clients/js/test/",
    ])
    .current_dir(root)
    .env("HOOKFAN_BIN", env!("CARGO_BIN_EXE_hookfan"))
    .env_remove("HOOKFAN_CHROMIUM")
    .env_remove("HOOKFAN_NO_CHROMIUM");
    if chromium.status.success() && !path.is_empty() {
        node.env("HOOKFAN_CHROMIUM", &path);
    } else {
        let why = String::from_utf8_lossy(&chromium.stderr).trim().to_owned();
        println!("js_client: no headless Chromium, the browser tests will skip: {why}");
        node.env("HOOKFAN_NO_CHROMIUM", why);
    }
    let installed = start.elapsed();

    let run = Instant::now();
    let (status, stdout, stderr) = run_bounded(&mut node, NODE_LIMIT);
    println!(
        "js_client: installs {:.1} s, node --test {:.1} s",
        installed.as_secs_f64(),
        run.elapsed().as_secs_f64()
    );
    let status = status.unwrap_or_else(|| {
        panic!("node --test clients/js/test/ still ran after {NODE_LIMIT:?}: killed\n{stdout}\n{stderr}")
    });
    assert!(
        status.success(),
        "node --test clients/js/test/ failed ({status}):\n{stdout}\n{stderr}"
    );
    println!("{stdout}{stderr}");
    // The summary is there: the tests ran (and none failed).
    assert!(
        stdout.contains("ℹ fail 0"),
        "no summary from node --test:\n{stdout}"
    );
}

/// Runs `cmd` in a process group of its own, collecting its output; kills
/// the group when it is still running after `limit` (status None then).
fn run_bounded(
    cmd: &mut Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run node --test");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for node") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}
