//! A PostgreSQL server of a test's own (`initdb` + `pg_ctl` in a temporary
//! directory, on a free port), for tests that crash and restart the server: the
//! database-restart test and the chaos suite.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Where a PostgreSQL server program is: on `PATH`, else in Debian's
/// `/usr/lib/postgresql/N/bin` (the newest N), which is not on `PATH` by default.
pub fn pg_program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        dirs.sort();
        dirs.pop().unwrap_or_else(|| PathBuf::from(name))
    })
}

/// Whether `initdb` and `pg_ctl` can be found ([`pg_program`]).
pub fn private_server_available() -> bool {
    ["initdb", "pg_ctl"].iter().all(|p| pg_program(p).is_file())
}

/// A PostgreSQL server of the test's own: `initdb` in a temporary directory, `pg_ctl`
/// on a free port. Stopped and removed on drop, even when the test fails. As root
/// (CI) it runs as the `postgres` OS user, since PostgreSQL refuses to run as root.
pub struct PrivateServer {
    dir: TempDir,
    port: u16,
    as_postgres: bool,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer {
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", &server.dir.path().to_string_lossy()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the server directory to postgres");
        }
        server.pg(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.ctl(&["start", "-w", "-t", "60"]);
        server
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a PostgreSQL program, as the `postgres` user when we are root.
    pub fn pg(&self, program: &str, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(pg_program(program));
            cmd
        } else {
            Command::new(pg_program(program))
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn ctl(&self, args: &[&str]) {
        let data = self.data().to_string_lossy().into_owned();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut all = vec!["-D", &data, "-l"];
        let log = log.to_string_lossy().into_owned();
        all.push(&log);
        all.extend(["-o", &options]);
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(pg_program("pg_ctl"));
            cmd
        } else {
            Command::new(pg_program("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data, "stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The TempDir removes the data directory after this.
    }
}
