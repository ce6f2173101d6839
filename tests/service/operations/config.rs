//! `treecast serve`'s configuration (issue 28, item 5): a TOML file, `TREECAST_*` variables and
//! flags, in that rising order of precedence; `--check-config`; the PostgreSQL password from a
//! file, `PGPASSWORD` or a passfile, never only from the URL.

use std::process::{Command, Output};

use crate::service::{Served, keyed_dir};

fn serve(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_treecast"));
    command.arg("serve").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn settings_come_from_flags_then_the_environment_then_the_file() {
    let dir = keyed_dir();
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        r#"
listen = "127.0.0.1:0"
timeout = 11
concurrency = 7
max-connections = 99
store = "postgres://treecast:hunter2-secret@db.example/treecast"
offer = ["rental:299:864000:172800:0:0", "loan:0:1209600:0:0:0"]
insecure-http = true
"#,
    )
    .unwrap();
    let keys = dir.path().join("keys");
    let out = serve(
        &[
            "--config",
            file.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--admin-token",
            "/nonexistent/admin.token",
            "--concurrency",
            "9",
            "--check-config",
        ],
        &[
            ("TREECAST_TIMEOUT", "12"),
            ("TREECAST_MAX_CONNECTIONS", "55"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no `{key}` in\n{text}"))
            .to_owned()
    };
    assert!(line("concurrency").contains("\"9\"  # flag"), "{text}");
    assert!(line("timeout").contains("\"12\"  # environment"), "{text}");
    assert!(
        line("max-connections").contains("\"55\"  # environment"),
        "{text}"
    );
    assert!(
        line("listen").contains("\"127.0.0.1:0\"  # config file"),
        "{text}"
    );
    assert!(
        line("insecure-http").contains("\"true\"  # config file"),
        "{text}"
    );
    assert!(
        line("offer").contains("rental:299") && line("offer").contains("loan:0"),
        "{text}"
    );
    assert!(line("header-timeout").contains("# default"), "{text}");
    // The password is redacted; nothing was opened or created.
    assert!(!text.contains("hunter2"), "{text}");
    assert!(line("store").contains("***"), "{text}");

    // A typo is an error, not a silently ignored setting.
    std::fs::write(&file, "listne = \"127.0.0.1:0\"\n").unwrap();
    let out = serve(&["--config", file.to_str().unwrap(), "--check-config"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`listne` is not a setting of serve"), "{err}");
    // So is a value of the wrong kind, with the flag's own message.
    std::fs::write(&file, "timeout = \"soon\"\n").unwrap();
    let out = serve(&["--config", file.to_str().unwrap(), "--check-config"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}

#[test]
fn the_postgresql_password_comes_from_a_file_pgpassword_or_a_passfile() {
    let Some(cluster) = crate::pg::Cluster::start() else {
        return;
    };
    // A role that must give its password (SCRAM) on the cluster's socket.
    let (conninfo, _) = cluster.database("secured");
    let mut admin = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "CREATE ROLE owner LOGIN PASSWORD 'pw-in-a-file'; \
             ALTER DATABASE secured OWNER TO owner; \
             GRANT ALL ON SCHEMA public TO owner;",
        )
        .unwrap();
    let hba = cluster.dir.join("data").join("pg_hba.conf");
    let rest = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all owner scram-sha-256\n{rest}")).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let host: String = cluster.dir.display().to_string().replace('/', "%2F");
    let url = format!("postgres://owner@{host}:5432/secured");

    let dir = keyed_dir();
    // Without a password: refused by the server, and the process says why.
    let out = serve(
        &[
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--height",
            "16",
            "--check-config",
        ],
        &[],
    );
    assert!(out.status.success(), "check-config opens nothing: {out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["store", "check", "--store", &url])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // From a file: serve starts and is ready.
    let password = dir.path().join("pg.password");
    std::fs::write(&password, "pw-in-a-file\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Readable by others, it is refused, as the token file is.
        let out = serve(
            &[
                "--store",
                &url,
                "--store-password-file",
                password.to_str().unwrap(),
            ],
            &[
                ("TREECAST_KEYS", dir.path().join("keys").to_str().unwrap()),
                (
                    "TREECAST_ADMIN_TOKEN",
                    dir.path().join("admin.token").to_str().unwrap(),
                ),
                ("TREECAST_LISTEN", "127.0.0.1:0"),
                ("TREECAST_HEIGHT", "16"),
            ],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("readable by others"),
            "{out:?}"
        );
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let served = Served::start(
        dir.path(),
        &url,
        &["--store-password-file", password.to_str().unwrap()],
    );
    assert_eq!(super::http(&served.base, "GET", "/v1/ready", &[]).0, 200);
    assert!(served.stop().success());

    // From PGPASSWORD, and from a passfile (mode 0600), as libpq reads them.
    let check = |env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_treecast"));
        command
            .args(["store", "check", "--store", &url])
            .env_remove("PGPASSWORD");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let out = check(&[("PGPASSWORD", "pw-in-a-file")]);
    assert!(out.status.success(), "{out:?}");
    let passfile = dir.path().join("pgpass");
    std::fs::write(&passfile, "localhost:5432:secured:owner:pw-in-a-file\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = check(&[("PGPASSFILE", passfile.to_str().unwrap())]);
    assert!(out.status.success(), "{out:?}");
    // A passfile others can read is ignored, as libpq does.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = check(&[("PGPASSFILE", passfile.to_str().unwrap())]);
        assert!(!out.status.success());
    }
}
