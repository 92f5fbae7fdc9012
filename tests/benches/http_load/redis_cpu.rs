//! The Redis server's own CPU time (`INFO cpu`), to show what each request
//! costs Redis besides what it costs the application server. The figure
//! covers the whole server: on a shared Redis, other clients' commands
//! during the measurement are included.

use std::time::Duration;

/// A connection for asking Redis about itself.
pub struct RedisCpu {
    connection: redis::aio::MultiplexedConnection,
}

impl RedisCpu {
    /// Connects to the server at `url`.
    pub async fn connect(url: &str) -> Result<RedisCpu, String> {
        let client = redis::Client::open(url).map_err(|error| format!("Redis: {error}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|error| format!("Redis: {error}"))?;
        Ok(RedisCpu { connection })
    }

    /// The server's CPU time so far, user and system.
    pub async fn used(&mut self) -> Result<Duration, String> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut self.connection)
            .await
            .map_err(|error| format!("Redis INFO cpu: {error}"))?;
        let seconds = |field: &str| -> Result<f64, String> {
            info.lines()
                .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| format!("INFO cpu has no {field}"))
        };
        Ok(Duration::from_secs_f64(
            seconds("used_cpu_user")? + seconds("used_cpu_sys")?,
        ))
    }
}
