//! Integration tests: the real router over real HTTP, on SQLite + a local directory and on
//! PostgreSQL + an S3 server (started by `scripts/test.sh`).

#[path = "../../src/sniff/fixtures.rs"]
mod fixtures;
mod helpers;
mod hostile;

mod browser;
pub mod cli;
mod crash;
mod deliveries;
mod direct;
mod docs;
mod edges;
mod endpoints;
mod erasure;
mod events;
mod formats;
pub mod hardening;
mod limits;
mod operability;
mod ops;
pub mod outage;
pub mod receiver;
mod replicas;
mod scanning;
mod sweeper;
mod text;
mod tokens;
mod uploads;
mod webhooks;
