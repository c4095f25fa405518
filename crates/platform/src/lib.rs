//! Start-up code every component shares: typed settings, telemetry, database connections, the
//! HTTP server with its bounds on every request, and graceful shutdown. Nothing here knows about
//! orders, stock or payments.

pub mod auth;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod postgres;
pub mod redis;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
pub mod trace;

pub use settings::Settings;
pub use supervise::run_until_stopped;
