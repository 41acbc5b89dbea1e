//! The MySQL/MariaDB side: connections, preflight, the catalog, and the binlog stage.

pub mod binlog;
pub mod catalog;
pub mod connect;
pub mod ddl;
pub mod decode;
pub mod mariadb;
pub mod preflight;
pub mod recopy;
pub mod rows;
pub mod snapshot;
pub mod tablemap;
pub mod watch;
