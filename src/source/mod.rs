//! The MySQL/MariaDB side: connections, the catalog, the binlog stage and its decoder, snapshot
//! reads for the backfill, and the watcher of the source's binlog end.

pub mod alter;
pub mod binlog;
pub mod catalog;
pub mod connect;
pub mod ddl;
pub mod decode;
pub mod end_watch;
pub mod mariadb;
pub mod online_change;
pub mod recopy;
pub mod rows;
pub mod schema_change;
pub mod snapshot;
pub mod tablemap;
pub mod tool_tables;
pub mod verify_ca;
