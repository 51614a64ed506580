//! Integration tests: drive the real `nemsms-diff` binary in temp dirs.

mod bfo;
mod cli;
mod crash;
mod disk;
mod faults;
mod register;
mod run;
mod security;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `args` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

/// Runs the binary with extra environment variables.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("binary runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
}

/// A server process started for a test; stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: std::process::Child,
    /// The first line it printed, with the address it listens on.
    pub banner: String,
}

impl Server {
    /// Starts `nemsms-diff ARGS` and waits for its first line on stdout.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Self::start_env(dir, args, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("server starts");
        let mut banner = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        assert!(!banner.is_empty(), "server printed nothing: {args:?}");
        Server { child, banner }
    }

    /// The `scheme://host:port` it announced.
    pub fn url(&self) -> String {
        let start = self
            .banner
            .find("://")
            .map(|i| self.banner[..i].rfind(' ').map_or(0, |s| s + 1))
            .unwrap();
        self.banner[start..].trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
