//! The deployment files: the systemd units pass `systemd-analyze verify`
//! (and its offline security score), the Kubernetes manifests validate
//! against the Kubernetes schemas (`kubernetes-validate --strict`, offline),
//! and each carries the settings the operators rely on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(sub)
}

/// The units with ExecStart pointing at the binary under test (verify
/// checks that the command exists).
fn units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["nemsms-diff.service", "nemsms-diff.timer"] {
        let text = fs::read_to_string(deploy("systemd").join(name)).unwrap();
        fs::write(
            dir.path().join(name),
            text.replace(
                "/usr/local/bin/nemsms-diff",
                env!("CARGO_BIN_EXE_nemsms-diff"),
            ),
        )
        .unwrap();
    }
    dir
}

fn verify(dir: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("nemsms-diff.service"))
        .arg(dir.join("nemsms-diff.timer"))
        .output()
        .expect("systemd-analyze runs (scripts/test.sh installs systemd)")
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = units();
    let out = verify(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "verify: {err}"
    );
    // The check is real: an unknown key is reported.
    let service = dir.path().join("nemsms-diff.service");
    let good = fs::read_to_string(&service).unwrap();
    fs::write(&service, format!("{good}ProtectSystm=strict\n")).unwrap();
    let bad = verify(dir.path());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Unknown key 'ProtectSystm'"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    fs::write(&service, &good).unwrap();

    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=nemsms-diff",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "Type=oneshot",
    ] {
        assert!(good.lines().any(|l| l == line), "missing {line}");
    }
    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&service)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sec.stdout);
    let level: f64 = text
        .split("Overall exposure level for nemsms-diff.service: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    assert!(level <= 2.0, "exposure {level}: {text}");
    let timer = fs::read_to_string(dir.path().join("nemsms-diff.timer")).unwrap();
    assert!(timer.contains("Persistent=true"));
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("python3 runs (scripts/test.sh installs kubernetes-validate)")
}

#[test]
fn kubernetes_manifests_validate_offline() {
    let mut files: Vec<PathBuf> = fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let out = validate(&files);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in [
        "cronjob/",
        "persistentvolumeclaim/",
        "secret/",
        "configmap/",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{text}"
        );
    }
    let cron = fs::read_to_string(deploy("kubernetes").join("cronjob.yaml")).unwrap();
    for setting in [
        "concurrencyPolicy: Forbid",
        "restartPolicy: Never",
        "claimName: nemsms-diff-state",
        "secretName: nemsms-diff-certs",
        "secretName: nemsms-diff-id-key",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(cron.contains(setting), "missing {setting}");
    }
    // The check is real: a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("cronjob.yaml");
    fs::write(
        &bad,
        cron.replace("concurrencyPolicy:", "concurencyPolicy:"),
    )
    .unwrap();
    assert!(!validate(&[bad]).status.success());
}
