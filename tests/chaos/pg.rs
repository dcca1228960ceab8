//! PostgreSQL faults: killing the workers' connections (`pg_terminate_backend` on
//! their `application_name`) and, on a private server, crashing and restarting the
//! server (`pg_ctl stop -m immediate`, then `start`).

use std::time::Duration;

use crate::common::PrivateServer;

pub struct PgFaults {
    /// Where the driver connects to kill connections (no `application_name`).
    admin_url: String,
    /// The `application_name` the workers' URL sets.
    app_name: String,
    client: Option<postgres::Client>,
    server: Option<PrivateServer>,
}

impl PgFaults {
    pub fn new(admin_url: String, app_name: String, server: Option<PrivateServer>) -> PgFaults {
        PgFaults {
            admin_url,
            app_name,
            client: None,
            server,
        }
    }

    pub fn can_restart(&self) -> bool {
        self.server.is_some()
    }

    /// Kills every connection the workers hold; returns how many.
    pub fn terminate_connections(&mut self) -> Result<u64, String> {
        if self.client.as_mut().is_none_or(|c| c.is_closed()) {
            self.client = Some(
                postgres::Client::connect(&self.admin_url, postgres::NoTls)
                    .map_err(|e| format!("driver cannot connect to PostgreSQL: {e}"))?,
            );
        }
        let client = self.client.as_mut().expect("connected above");
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                 FROM pg_stat_activity WHERE application_name = $1",
                &[&self.app_name],
            )
            .map_err(|e| {
                self.client = None;
                format!("pg_terminate_backend failed: {e}")
            });
        let row = row?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Crashes the private server, keeps it down for `down`, starts it again.
    pub fn restart(&mut self, down: Duration) -> Result<(), String> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        self.client = None;
        server.ctl(&["stop", "-m", "immediate", "-w"]);
        std::thread::sleep(down);
        server.ctl(&["start", "-w", "-t", "60"]);
        Ok(())
    }
}
